package safetensors

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sparsify/sparsify/format"
)

// TestFileHashWhileWriting writes tensors concurrently with uneven timing, so
// that the file hash takes some tensors as they are written and reads others
// back, and checks every digest against the file written.
func TestFileHashWhileWriting(t *testing.T) {
	s0, r0 := teeStreamed.Load(), teeReadBack.Load()
	rng := rand.New(rand.NewPCG(1, 2))
	dir := t.TempDir()
	for round := 0; round < 4; round++ {
		var ts []format.Tensor
		for i := 0; i < 24; i++ {
			b := make([]byte, 2*(1+rng.IntN(300_000)))
			for k := range b {
				b[k] = byte(rng.Uint32())
			}
			delay := time.Duration(rng.IntN(3)) * time.Millisecond
			chunk := 1 + rng.IntN(len(b))
			if i%3 == 0 {
				chunk = len(b) // one Write of the whole tensor
			}
			ts = append(ts, format.Tensor{Name: "t" + string(rune('a'+i)), DType: format.U8, Shape: []int64{int64(len(b))}, Size: int64(len(b)),
				WriteTo: func(w io.Writer) (int64, error) {
					var n int64
					for off := 0; off < len(b); off += chunk {
						time.Sleep(delay)
						k, err := w.Write(b[off:min(off+chunk, len(b))])
						n += int64(k)
						if err != nil {
							return n, err
						}
					}
					return n, nil
				}})
		}
		path := filepath.Join(dir, "h.safetensors")
		res, err := WriteFile(context.Background(), path, ts, WriteOptions{Jobs: 1 + round})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(raw)
		if got := hex.EncodeToString(sum[:]); res.Files[0].SHA256 != got || res.Files[0].Size != int64(len(raw)) {
			t.Fatalf("round %d: file digest %s, file is %s", round, res.Files[0].SHA256, got)
		}
		for _, tr := range res.Tensors {
			ts := sha256.Sum256(raw[tr.Offset : tr.Offset+tr.Size])
			if hex.EncodeToString(ts[:]) != tr.SHA256 {
				t.Errorf("round %d: tensor %s digest differs", round, tr.Name)
			}
		}
	}
	t.Logf("streamed %d, read back %d", teeStreamed.Load()-s0, teeReadBack.Load()-r0)
	if teeStreamed.Load() == s0 || teeReadBack.Load() == r0 {
		t.Errorf("file hash streamed %d and read back %d tensors: want both paths exercised", teeStreamed.Load()-s0, teeReadBack.Load()-r0)
	}
}
