package tokenizer

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// preTokenizer splits text into words before byte-level BPE. The regexes of
// the supported families use look-ahead, which Go's regexp lacks, so each is
// written out as a matcher with the same leftmost-first semantics.
type preTokenizer struct {
	family string
}

func newPreTokenizer(name string) (preTokenizer, error) {
	switch name {
	case "", "llama3", "llama-bpe", "llama-v3", "default":
		return preTokenizer{"llama3"}, nil
	case "qwen2", "deepseek-r1-qwen":
		return preTokenizer{"qwen2"}, nil
	case "gpt2", "gpt-2":
		return preTokenizer{"gpt2"}, nil
	case "smollm", "starcoder", "digits":
		return preTokenizer{"smollm"}, nil
	}
	return preTokenizer{}, fmt.Errorf("%w: unsupported pre-tokenizer %q", ErrFormat, name)
}

// Regexes reproduced:
//
//	llama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//	qwen2:  the same with \p{N} instead of \p{N}{1,3}
//	gpt2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//	smollm: digits split one by one, then gpt2 on the rest
func (p preTokenizer) split(text string) []string {
	if text == "" {
		return nil
	}
	if p.family == "smollm" {
		var out []string
		start := 0
		for i, r := range text {
			if unicode.IsNumber(r) {
				out = append(out, splitRegex(text[start:i], "gpt2")...)
				out = append(out, text[i:i+utf8.RuneLen(r)])
				start = i + utf8.RuneLen(r)
			}
		}
		return append(out, splitRegex(text[start:], "gpt2")...)
	}
	return splitRegex(text, p.family)
}

func isL(r rune) bool     { return unicode.IsLetter(r) }
func isN(r rune) bool     { return unicode.IsNumber(r) }
func isS(r rune) bool     { return unicode.IsSpace(r) }
func isNL(r rune) bool    { return r == '\r' || r == '\n' }
func isOther(r rune) bool { return !isS(r) && !isL(r) && !isN(r) }

func splitRegex(text, family string) []string {
	rs := []rune(text)
	var out []string
	for i := 0; i < len(rs); {
		n := matchAt(rs, i, family)
		if n <= 0 {
			n = 1
		}
		out = append(out, string(rs[i:i+n]))
		i += n
	}
	return out
}

// matchAt returns the length in runes of the match at i.
func matchAt(rs []rune, i int, family string) int {
	at := func(k int) rune {
		if k < len(rs) {
			return rs[k]
		}
		return -1
	}
	run := func(k int, f func(rune) bool) int { // end of the run of f from k
		for k < len(rs) && f(rs[k]) {
			k++
		}
		return k
	}
	// contractions
	if at(i) == '\'' {
		ci := family != "gpt2"
		for _, c := range []string{"s", "t", "re", "ve", "m", "ll", "d"} {
			if i+1+len(c) <= len(rs) {
				w := string(rs[i+1 : i+1+len(c)])
				if w == c || (ci && strings.ToLower(w) == c) {
					return 1 + len(c)
				}
			}
		}
	}
	r := at(i)
	if family == "gpt2" {
		j := i
		if r == ' ' {
			j++
		}
		if k := run(j, isL); k > j {
			return k - i
		}
		if k := run(j, isN); k > j {
			return k - i
		}
		if k := run(j, isOther); k > j {
			return k - i
		}
	} else {
		// [^\r\n\p{L}\p{N}]?\p{L}+
		if r >= 0 && !isNL(r) && !isL(r) && !isN(r) && isL(at(i+1)) {
			return run(i+1, isL) - i
		}
		if isL(r) {
			return run(i, isL) - i
		}
		if isN(r) {
			if family == "qwen2" {
				return 1
			}
			return min(run(i, isN)-i, 3)
		}
		// ' ?[^\s\p{L}\p{N}]+[\r\n]*'
		j := i
		if r == ' ' {
			j++
		}
		if k := run(j, isOther); k > j {
			return run(k, isNL) - i
		}
		// \s*[\r\n]+
		if isS(r) {
			end := run(i, isS)
			for k := end - 1; k >= i; k-- {
				if isNL(rs[k]) {
					return k + 1 - i
				}
			}
		}
	}
	// \s+(?!\S) | \s+
	if isS(r) {
		end := run(i, isS)
		if end == len(rs) || end-i == 1 {
			return end - i
		}
		return end - 1 - i
	}
	return 1
}
