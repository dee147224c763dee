package inspectcmd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sparsify/sparsify/cmd/sparsify/internal/cli"
	"github.com/sparsify/sparsify/cmd/sparsify/internal/cmdutil"
	"github.com/sparsify/sparsify/cmd/sparsify/internal/inspectcmd"
	"github.com/sparsify/sparsify/internal/synth"
	"github.com/sparsify/sparsify/internal/testutil"
	"github.com/sparsify/sparsify/pack"
)

func TestNewCmdFlags(t *testing.T) {
	cases := []struct {
		argv    string
		wantErr bool
		json    bool
		jobs    int
	}{
		{argv: "m.gguf"},
		{argv: "m.gguf --json --jobs 2", json: true, jobs: 2},
		{argv: "", wantErr: true},
		{argv: "a b", wantErr: true},
		{argv: "a --jobs -1", wantErr: true},
	}
	for _, c := range cases {
		io := &cmdutil.IO{Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}}
		var got *inspectcmd.Options
		cmd := inspectcmd.NewCmd(io, func(_ context.Context, o *inspectcmd.Options) error { got = o; return nil })
		cmd.SetArgs(strings.Fields(c.argv))
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		err := cmd.Execute()
		if (err != nil) != c.wantErr {
			t.Errorf("%q: err %v", c.argv, err)
			continue
		}
		if err == nil && (got.JSON != c.json || got.Jobs != c.jobs || got.Path != strings.Fields(c.argv)[0]) {
			t.Errorf("%q: %+v", c.argv, got)
		}
	}
}

func run(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := cli.Run(context.Background(), &cmdutil.IO{Out: &out, ErrOut: &errOut}, args)
	return code, out.String(), errOut.String()
}

func TestInspectStories(t *testing.T) {
	p := testutil.SharedData(t, "stories260K.gguf")
	code, out, errOut := run("inspect", p)
	if code != 0 {
		t.Fatalf("code %d %s", code, errOut)
	}
	for _, want := range []string{"gguf v3", "hidden 64, layers 5, heads 8 (kv 4), ffn 172", "tokenizer.ggml.tokens", "… (512 string)", "blk.4.ffn_down.weight", "0 of 37 2-D tensors are 2:4"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	code, out, _ = run("inspect", p, "--json")
	var r pack.Report
	if code != 0 || json.Unmarshal([]byte(out), &r) != nil || len(r.Tensors) != 48 || r.Params != 292800 || r.Format != "gguf" {
		t.Fatalf("json: code %d, %d tensors, %d params", code, len(r.Tensors), r.Params)
	}
}

func TestInspectPacked(t *testing.T) {
	dir := t.TempDir()
	cfg := synth.Tiny()
	cfg.Sparse24 = true
	hf := filepath.Join(dir, "hf")
	if err := synth.WriteHF(hf, cfg, 2); err != nil {
		t.Fatal(err)
	}
	r, err := pack.Inspect(context.Background(), hf, pack.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ts := range r.Tensors {
		lin := strings.Contains(ts.Name, "_proj")
		if lin && (ts.Sparse24 != "yes" || ts.Zeros < 0.49) {
			t.Errorf("%s: 2:4 %q zeros %.3f", ts.Name, ts.Sparse24, ts.Zeros)
		}
		if strings.Contains(ts.Name, "embed") && ts.Sparse24 != "no" {
			t.Errorf("%s: 2:4 %q", ts.Name, ts.Sparse24)
		}
	}
	out := filepath.Join(dir, "packed")
	if _, err := pack.Convert(context.Background(), hf, out, pack.Options{Layout: pack.Cutlass}); err != nil {
		t.Fatal(err)
	}
	code, text, _ := run("inspect", out)
	if code != 0 || !strings.Contains(text, "cutlass-packed") || !strings.Contains(text, "q_proj.meta") || !strings.Contains(text, "by construction") {
		t.Errorf("code %d\n%s", code, text)
	}
	code, _, errOut := run("inspect", filepath.Join(dir, "missing"))
	if code != cmdutil.ExitUsage || !strings.Contains(errOut, "missing") {
		t.Errorf("missing: %d %q", code, errOut)
	}
}
