package convertcmd_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sparsify/sparsify/cmd/sparsify/internal/cli"
	"github.com/sparsify/sparsify/cmd/sparsify/internal/cmdutil"
	"github.com/sparsify/sparsify/cmd/sparsify/internal/convertcmd"
	"github.com/sparsify/sparsify/internal/synth"
	"github.com/sparsify/sparsify/internal/testutil"
	"github.com/sparsify/sparsify/pack"
)

func TestNewCmdFlags(t *testing.T) {
	cases := []struct {
		argv    string
		wantErr string
		check   func(*convertcmd.Options) bool
	}{
		{argv: "in out", check: func(o *convertcmd.Options) bool {
			return o.In == "in" && o.Out == "out" && o.Method == "none" && o.Layout == "dense" && o.Pattern == "2:4" && o.DType == "keep" && o.Jobs > 0
		}},
		{argv: "in out --to gguf --dtype f16", check: func(o *convertcmd.Options) bool { return o.To == "gguf" && o.DType == "f16" }},
		{argv: "in out --method magnitude --layout cutlass --pattern 1:2 --jobs 3", check: func(o *convertcmd.Options) bool {
			return o.Method == "magnitude" && o.Layout == "cutlass" && o.Pattern == "1:2" && o.Jobs == 3
		}},
		{argv: "in out --targets a --targets b --ignore c --save-mask m.st --compress zstd --max-shard-size 2GiB --strict", check: func(o *convertcmd.Options) bool {
			return reflect.DeepEqual(o.Targets, []string{"a", "b"}) && reflect.DeepEqual(o.Ignore, []string{"c"}) && o.SaveMask == "m.st" && o.Compress == "zstd" && o.MaxShardSize == "2GiB" && o.Strict
		}},
		{argv: "in out --method wanda --calib c.txt --calib-samples 16 --seq-len 64 --seed 3", check: func(o *convertcmd.Options) bool {
			return o.Method == "wanda" && o.Calib == "c.txt" && o.CalibSamples == 16 && o.SeqLen == 64 && o.Seed == 3
		}},
		{argv: "in out --method sparsegpt-prior --calib c.txt", check: func(o *convertcmd.Options) bool {
			return o.Method == "sparsegpt-prior" && o.Calib == "c.txt"
		}},
		{argv: "in", wantErr: "arg"},
		{argv: "in out --to onnx", wantErr: "--to"},
		{argv: "in out --dtype q4", wantErr: "--dtype"},
		{argv: "in out --method random", wantErr: "--method"},
		{argv: "in out --method magnitude --mask m", wantErr: "exclusive"},
		{argv: "in out --pattern 4:2", wantErr: "pattern"},
		{argv: "in out --layout csr", wantErr: "layout"},
		{argv: "in out --compress gzip", wantErr: "--compress"},
		{argv: "in out --max-shard-size lots", wantErr: "--max-shard-size"},
		{argv: "in out --jobs 0", wantErr: "--jobs"},
		{argv: "in out --method sparsegpt", wantErr: "--calib"},
		{argv: "in out --method sparsegpt-prior", wantErr: "--calib"},
		{argv: "in out --method wanda", wantErr: "--calib"},
		{argv: "in out --method sparsegpt-mask", wantErr: "--calib"},
	}
	for _, c := range cases {
		t.Run(c.argv, func(t *testing.T) {
			io := &cmdutil.IO{Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}}
			var got *convertcmd.Options
			cmd := convertcmd.NewCmd(io, func(_ context.Context, o *convertcmd.Options) error { got = o; return nil })
			cmd.SetArgs(strings.Fields(c.argv))
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetErr(&bytes.Buffer{})
			err := cmd.Execute()
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got == nil || !c.check(got) {
				t.Errorf("options %+v", got)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for s, want := range map[string]int64{"5GB": 5e9, "500MB": 500e6, "2GiB": 2 << 30, "1024": 1024, "1.5kb": 1500} {
		if got, err := convertcmd.ParseSize(s); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "-1GB", "GB", "1e30TB"} {
		if _, err := convertcmd.ParseSize(s); err == nil {
			t.Errorf("ParseSize(%q): want error", s)
		}
	}
}

func run(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := cli.Run(context.Background(), &cmdutil.IO{Out: &out, ErrOut: &errOut}, args)
	return code, out.String(), errOut.String()
}

func TestConvertRun(t *testing.T) {
	dir := t.TempDir()
	hf := filepath.Join(dir, "hf")
	if err := synth.WriteHF(hf, synth.Tiny(), 1); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run("convert", hf, filepath.Join(dir, "m.gguf"), "--dtype", "f16", "-q")
	if code != 0 || !strings.Contains(out, "wrote") || errOut != "" {
		t.Fatalf("code %d out %q err %q", code, out, errOut)
	}
	code, out, _ = run("convert", hf, filepath.Join(dir, "sp"), "--method", "magnitude", "--layout", "bitmask", "--compress", "zstd", "-q")
	if code != 0 || !strings.Contains(out, "14 weights pruned 2:4, layout bitmask") {
		t.Fatalf("code %d out %q", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "sp", "model.safetensors.zst")); err != nil {
		t.Error(err)
	}
	if _, err := pack.ReadManifest(filepath.Join(dir, "sp", pack.ManifestName)); err != nil {
		t.Error(err)
	}
	// existing output: refused, exit 2
	code, _, errOut = run("convert", hf, filepath.Join(dir, "sp"), "-q")
	if code != cmdutil.ExitUsage || !strings.Contains(errOut, "exists") {
		t.Errorf("existing output: code %d %q", code, errOut)
	}
	// not 2:4 and no method: exit 2, one line naming tensor, row and group
	code, _, errOut = run("convert", hf, filepath.Join(dir, "c"), "--layout", "cutlass", "-q")
	if code != cmdutil.ExitUsage || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, "row 0, group 0") || !strings.Contains(errOut, "q_proj.weight") {
		t.Errorf("non-2:4: code %d %q", code, errOut)
	}
}

func TestBadInputExit2(t *testing.T) {
	dir := t.TempDir()
	hf := filepath.Join(dir, "hf")
	if err := synth.WriteHF(hf, synth.Tiny(), 1); err != nil {
		t.Fatal(err)
	}
	st := filepath.Join(hf, "model.safetensors")
	b, _ := os.ReadFile(st)
	bad := filepath.Join(dir, "trunc.safetensors")
	if err := os.WriteFile(bad, b[:len(b)-100], 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := run("convert", bad, filepath.Join(dir, "o.safetensors"))
	line := strings.TrimSpace(errOut)
	if code != cmdutil.ExitUsage || strings.Contains(line, "\n") || !strings.Contains(line, bad) || !strings.Contains(line, "tensor") || !strings.Contains(line, "byte") {
		t.Errorf("truncated safetensors: code %d %q", code, errOut)
	}
	g := testutil.SharedData(t, "stories260K.gguf")
	gb, _ := os.ReadFile(g)
	badg := filepath.Join(dir, "trunc.gguf")
	if err := os.WriteFile(badg, gb[:len(gb)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = run("convert", badg, filepath.Join(dir, "o2"))
	if code != cmdutil.ExitUsage || !strings.Contains(errOut, badg) || !strings.Contains(errOut, "byte") {
		t.Errorf("truncated gguf: code %d %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "o2")); !os.IsNotExist(err) {
		t.Error("output left behind")
	}
}

func TestCancelledLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	hf := filepath.Join(dir, "hf")
	if err := synth.WriteHF(hf, synth.Tiny(), 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errOut bytes.Buffer
	code := cli.Run(ctx, &cmdutil.IO{Out: &out, ErrOut: &errOut}, []string{"convert", hf, filepath.Join(dir, "o"), "--method", "magnitude"})
	if code != cmdutil.ExitCancel {
		t.Errorf("code %d %q", code, errOut.String())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("left behind: %v", ents)
	}
}
