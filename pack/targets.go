package pack

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/sparsify/sparsify/format/llama"
)

// DefaultTargets select the 2-D linear weights of the transformer blocks, by
// Hugging Face or GGUF name.
var DefaultTargets = []string{
	`^model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$`,
	`^blk\.\d+\.(attn_(q|k|v|output)|ffn_(gate|up|down))\.weight$`,
}

// neverPrune matches what is never pruned whatever the targets say:
// embeddings, the classifier, norms.
var neverPrune = regexp.MustCompile(`(^|\.)(embed_tokens|token_embd|lm_head|output|wte|wpe)\.weight$|norm`)

// Targets selects the weights a conversion prunes: 2-D tensors whose name (or
// its Hugging Face/GGUF counterpart) matches one of the target regular
// expressions (Go syntax, unanchored: anchor with ^ and $) and none of the
// ignore ones. Embeddings, lm_head/output, norms and tensors that are not 2-D
// are never selected. A Targets is safe for concurrent use.
type Targets struct {
	targets, ignore []string
	inc, exc        []*regexp.Regexp
}

// NewTargets compiles the expressions; nil or empty targets mean DefaultTargets.
func NewTargets(targets, ignore []string) (*Targets, error) {
	if len(targets) == 0 {
		targets = DefaultTargets
	}
	t := &Targets{targets: targets, ignore: ignore}
	for _, s := range targets {
		re, err := regexp.Compile(s)
		if err != nil {
			return nil, fmt.Errorf("pack: --targets %q: %w", s, err)
		}
		t.inc = append(t.inc, re)
	}
	for _, s := range ignore {
		re, err := regexp.Compile(s)
		if err != nil {
			return nil, fmt.Errorf("pack: --ignore %q: %w", s, err)
		}
		t.exc = append(t.exc, re)
	}
	return t, nil
}

// Patterns returns the target and ignore expressions in effect.
func (t *Targets) Patterns() (targets, ignore []string) { return t.targets, t.ignore }

// names returns name and its HF/GGUF counterpart.
func names(name string) []string {
	if g, ok := llama.ToGGUF(name); ok {
		return []string{name, g}
	}
	if h, ok := llama.ToHF(name); ok {
		return []string{name, h}
	}
	return []string{name}
}

// NeverPruned reports tensors no target can select (embeddings, classifier,
// norms, anything not 2-D).
func NeverPruned(name string, shape []int64) bool {
	if len(shape) != 2 {
		return true
	}
	for _, n := range names(name) {
		if neverPrune.MatchString(n) {
			return true
		}
	}
	return false
}

// Match reports whether the tensor is to be pruned.
func (t *Targets) Match(name string, shape []int64) bool {
	if NeverPruned(name, shape) || !strings.HasSuffix(name, ".weight") {
		return false
	}
	ns := names(name)
	hit := false
	for _, re := range t.inc {
		for _, n := range ns {
			if re.MatchString(n) {
				hit = true
			}
		}
	}
	if !hit {
		return false
	}
	for _, re := range t.exc {
		for _, n := range ns {
			if re.MatchString(n) {
				return false
			}
		}
	}
	return true
}
