package verify

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzTruncatedTensors feeds arbitrary files to the best-effort safetensors
// header scan used to name the tensors of a truncated shard: it must never
// panic or allocate more than the file holds.
func FuzzTruncatedTensors(f *testing.F) {
	hdr := `{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2,4],"data_offsets":[0,16]},"b":{"dtype":"U8","shape":[2],"data_offsets":[16,18]}}`
	good := append([]byte{byte(len(hdr)), 0, 0, 0, 0, 0, 0, 0}, hdr...)
	good = append(good, make([]byte, 18)...)
	f.Add(good)
	f.Add(good[:len(good)-5])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "x.safetensors")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, tr := range truncatedTensors(p) {
			if tr.end <= tr.size || tr.size != int64(len(b)) {
				t.Fatalf("bogus truncation %+v for %d bytes", tr, len(b))
			}
		}
	})
}

func TestTruncatedTensors(t *testing.T) {
	hdr := `{"a":{"dtype":"BF16","shape":[2,4],"data_offsets":[0,16]},"b":{"dtype":"U8","shape":[2],"data_offsets":[16,18]}}`
	b := append([]byte{byte(len(hdr)), 0, 0, 0, 0, 0, 0, 0}, hdr...)
	b = append(b, make([]byte, 17)...) // one byte short
	p := filepath.Join(t.TempDir(), "x.safetensors")
	os.WriteFile(p, b, 0o644)
	tr := truncatedTensors(p)
	if len(tr) != 1 || tr[0].name != "b" {
		t.Fatalf("truncated %+v, want tensor b", tr)
	}
}
