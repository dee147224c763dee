package verifycmd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sparsify/sparsify/cmd/sparsify/internal/cli"
	"github.com/sparsify/sparsify/cmd/sparsify/internal/cmdutil"
	"github.com/sparsify/sparsify/cmd/sparsify/internal/verifycmd"
	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/safetensors"
	"github.com/sparsify/sparsify/mask"
	"github.com/sparsify/sparsify/pack"
)

func TestNewCmdFlags(t *testing.T) {
	for _, c := range []struct {
		argv    string
		want    verifycmd.Options
		wantErr bool
	}{
		{argv: "out", want: verifycmd.Options{Path: "out", GEMMTokens: 64, Device: "auto"}},
		{argv: "out --device cpu --gpu-gemm cusparselt", want: verifycmd.Options{Path: "out", GEMMTokens: 64, Device: "cpu", GPUEngine: "cusparselt"}},
		{argv: "out --against m.gguf --json --junit r.xml --gemm-tokens 8 --seed 3 -q",
			want: verifycmd.Options{Path: "out", Against: "m.gguf", JSON: true, JUnit: "r.xml", GEMMTokens: 8, Seed: 3, Quiet: true, Device: "auto"}},
		{argv: "", wantErr: true},
		{argv: "a b", wantErr: true},
		{argv: "out --gemm-tokens -1", wantErr: true},
	} {
		var got *verifycmd.Options
		cmd := verifycmd.NewCmd(&cmdutil.IO{Out: io.Discard, ErrOut: io.Discard}, func(_ context.Context, o *verifycmd.Options) error {
			got = o
			return nil
		})
		cmd.SetArgs(strings.Fields(c.argv))
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		err := cmd.Execute()
		if (err != nil) != c.wantErr {
			t.Errorf("%q: err %v", c.argv, err)
			continue
		}
		if c.wantErr {
			continue
		}
		got.IO = nil
		if *got != c.want {
			t.Errorf("%q: options %+v, want %+v", c.argv, *got, c.want)
		}
	}
}

type magnitude struct{}

func (magnitude) Name() string             { return "magnitude" }
func (magnitude) Settings() map[string]any { return nil }
func (magnitude) Mask(_ context.Context, _ string, w []float32, rows, cols int, p mask.Pattern) (*mask.Mask, []float32, error) {
	m, err := mask.Magnitude(w, rows, cols, p)
	return m, nil, err
}

// sparseCheckpoint writes a one-weight BF16 checkpoint and its cutlass form.
func sparseCheckpoint(t *testing.T) (dense, out string) {
	t.Helper()
	dense = filepath.Join(t.TempDir(), "dense.safetensors")
	w := make([]float32, 64*64)
	for i := range w {
		w[i] = float32(i%13) - 6
	}
	b := make([]byte, 2*len(w))
	if err := format.FromFloat32(format.BF16, w, b); err != nil {
		t.Fatal(err)
	}
	ts := []format.Tensor{{Name: "model.layers.0.self_attn.q_proj.weight", DType: format.BF16, Shape: []int64{64, 64}, Size: int64(len(b)),
		WriteTo: func(w io.Writer) (int64, error) { n, err := w.Write(b); return int64(n), err }}}
	if _, err := safetensors.WriteFile(context.Background(), dense, ts, safetensors.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	out = filepath.Join(t.TempDir(), "out.safetensors")
	if _, err := pack.Convert(context.Background(), dense, out, pack.Options{Method: magnitude{}, Layout: pack.Cutlass}); err != nil {
		t.Fatal(err)
	}
	return dense, out
}

func TestExitCodes(t *testing.T) {
	dense, out := sparseCheckpoint(t)
	junit := filepath.Join(t.TempDir(), "verify.xml")
	var o, e bytes.Buffer
	io := &cmdutil.IO{Out: &o, ErrOut: &e}
	if code := cli.Run(context.Background(), io, []string{"verify", out, "--against", dense, "--junit", junit}); code != 0 {
		t.Fatalf("good checkpoint: exit %d\n%s\n%s", code, o.String(), e.String())
	}
	if !strings.Contains(o.String(), "q_proj.weight") || !strings.Contains(o.String(), ": OK") {
		t.Errorf("table:\n%s", o.String())
	}
	x, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tests    int `xml:"tests,attr"`
		Failures int `xml:"failures,attr"`
	}
	if err := xml.Unmarshal(x, &doc); err != nil || doc.Tests != 2 || doc.Failures != 0 {
		t.Errorf("junit: %v %+v", err, doc)
	}

	// One flipped bit in the packed values: exit 1, JSON names the tensor.
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-1000] ^= 0x20
	if err := os.WriteFile(out, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	o.Reset()
	e.Reset()
	if code := cli.Run(context.Background(), io, []string{"verify", out, "--json", "-q"}); code != cmdutil.ExitFailed {
		t.Fatalf("damaged checkpoint: exit %d, want 1\n%s", code, e.String())
	}
	var rep struct {
		Summary struct {
			OK bool `json:"ok"`
		} `json:"summary"`
		Violations []struct {
			File string `json:"file"`
		} `json:"violations"`
	}
	if err := json.Unmarshal(o.Bytes(), &rep); err != nil || rep.Summary.OK || len(rep.Violations) == 0 {
		t.Errorf("json: %v %+v", err, rep)
	}
	if !strings.Contains(e.String(), "violations") {
		t.Errorf("stderr: %q", e.String())
	}

	// Unreadable input: exit 2.
	if code := cli.Run(context.Background(), io, []string{"verify", filepath.Join(t.TempDir(), "nope")}); code != cmdutil.ExitUsage {
		t.Errorf("missing input: exit %d, want 2", code)
	}
}
