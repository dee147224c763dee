package evalcmd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sparsify/sparsify/cmd/sparsify/internal/cli"
	"github.com/sparsify/sparsify/cmd/sparsify/internal/cmdutil"
	"github.com/sparsify/sparsify/cmd/sparsify/internal/evalcmd"
	"github.com/sparsify/sparsify/internal/testutil"
	"github.com/sparsify/sparsify/mask"
	"github.com/sparsify/sparsify/model"
)

func TestNewCmdFlags(t *testing.T) {
	cases := []struct {
		argv    string
		wantErr bool
		seq     int
		batch   int
		mask    string
	}{
		{argv: "m.gguf --text v.txt", seq: 256},
		{argv: "m.gguf --text v.txt --seq-len 128 --batch 4 --mask k.safetensors --json", seq: 128, batch: 4, mask: "k.safetensors"},
		{argv: "m.gguf", wantErr: true},
		{argv: "--text v.txt", wantErr: true},
		{argv: "m.gguf --text v.txt --seq-len 1", wantErr: true},
		{argv: "m.gguf --text v.txt --batch -1", wantErr: true},
	}
	for _, c := range cases {
		io := &cmdutil.IO{Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}}
		var got *evalcmd.Options
		cmd := evalcmd.NewCmd(io, func(_ context.Context, o *evalcmd.Options) error { got = o; return nil })
		cmd.SetArgs(strings.Fields(c.argv))
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		err := cmd.Execute()
		if (err != nil) != c.wantErr {
			t.Errorf("%q: err %v", c.argv, err)
			continue
		}
		if err == nil && (got.SeqLen != c.seq || got.Batch != c.batch || got.Mask != c.mask || got.Model != "m.gguf") {
			t.Errorf("%q: %+v", c.argv, got)
		}
	}
}

func run(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := cli.Run(context.Background(), &cmdutil.IO{Out: &out, ErrOut: &errOut}, args)
	return code, out.String(), errOut.String()
}

// TestEvalStories runs eval on the first paragraphs of the valid text, dense
// and under an all-layers magnitude 2:4 mask file, and checks the JSON
// against the library's own perplexity.
func TestEvalStories(t *testing.T) {
	mp := testutil.SharedData(t, "stories260K.gguf")
	text, err := os.ReadFile(testutil.SharedData(t, "tinystories-valid.txt"))
	if err != nil {
		t.Fatal(err)
	}
	paras := model.Paragraphs(string(text))[:12]
	dir := t.TempDir()
	tp := filepath.Join(dir, "t.txt")
	if err := os.WriteFile(tp, []byte(strings.Join(paras, "\n\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	m, tok, err := model.Load(mp)
	if err != nil {
		t.Fatal(err)
	}
	want, n, err := model.Perplexity(context.Background(), m, tok, strings.Join(paras, "\n\n"), 64, nil)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run("eval", mp, "--text", tp, "--seq-len", "64", "--json")
	if code != 0 {
		t.Fatalf("code %d: %s", code, errOut)
	}
	var r evalcmd.Result
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if r.Perplexity != want || r.Tokens != n || r.SeqLen != 64 || !strings.Contains(errOut, "eval:") {
		t.Fatalf("got %+v (stderr %q), want perplexity %v over %d tokens", r, errOut, want, n)
	}
	// a magnitude mask on every linear layer must hurt
	masks := map[string]*mask.Mask{}
	for _, l := range m.Linears() {
		mk, err := mask.Magnitude(l.W, l.Out, l.In, mask.Pattern24)
		if err != nil {
			t.Fatal(err)
		}
		masks[l.Name] = mk
	}
	mfile := filepath.Join(dir, "mask.safetensors")
	if err := mask.WriteFile(mfile, masks, nil); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = run("eval", mp, "--text", tp, "--seq-len", "64", "--mask", mfile)
	if code != 0 {
		t.Fatalf("code %d: %s", code, errOut)
	}
	var ppl float64
	var layers int
	if _, err := fmtSscan(out, &ppl, &layers); err != nil || ppl < 2*want || layers != 35 {
		t.Fatalf("masked eval %q (dense %v): %v", out, want, err)
	}
	// a mask naming an unknown tensor is an error
	bad := filepath.Join(dir, "bad.safetensors")
	if err := mask.WriteFile(bad, map[string]*mask.Mask{"nope.weight": mask.New(4, 4)}, nil); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run("eval", mp, "--text", tp, "--mask", bad); code != 2 || !strings.Contains(errOut, "nope.weight") {
		t.Fatalf("bad mask: code %d, %q", code, errOut)
	}
}
