package tokenizer

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"strings"
)

// maxLlama2CTokens bounds the vocabulary read from a tokenizer.bin.
const maxLlama2CTokens = 1 << 20

// ReadLlama2C reads llama2.c's tokenizer.bin: int32 max_token_length, then per
// token float32 score, int32 length, bytes. The file does not store its size;
// vocab (the model's vocabulary size, 0 = read to the end) says how many.
// Pieces store spaces as ' ' there; they are converted to ▁. Ids 0, 1, 2 are
// <unk>, BOS and EOS, as in every llama2.c export.
func ReadLlama2C(path string, vocab int) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseLlama2C(path, data, vocab)
}

// ParseLlama2C parses the bytes of a tokenizer.bin (name is used in errors).
func ParseLlama2C(name string, data []byte, vocab int) (*Tokenizer, error) {
	bad := func(off int, format string, a ...any) error {
		return fmt.Errorf("%w: %s: at byte %d: %s", ErrFormat, name, off, fmt.Sprintf(format, a...))
	}
	if len(data) < 4 {
		return nil, bad(0, "file too short for a header")
	}
	maxLen := int32(binary.LittleEndian.Uint32(data))
	if maxLen <= 0 || maxLen > 1<<16 {
		return nil, bad(0, "max token length %d out of range", maxLen)
	}
	if vocab < 0 || vocab > maxLlama2CTokens {
		return nil, bad(0, "vocabulary size %d out of range", vocab)
	}
	var s Spec
	off := 4
	for (vocab == 0 && off < len(data)) || len(s.Tokens) < vocab {
		if len(s.Tokens) >= maxLlama2CTokens {
			return nil, bad(off, "more than %d tokens", maxLlama2CTokens)
		}
		if off+8 > len(data) {
			return nil, bad(off, "token %d: truncated header", len(s.Tokens))
		}
		score := math.Float32frombits(binary.LittleEndian.Uint32(data[off:]))
		n := int32(binary.LittleEndian.Uint32(data[off+4:]))
		if n < 0 || n > maxLen || off+8+int(n) > len(data) {
			return nil, bad(off+4, "token %d: length %d (max %d, %d bytes left)", len(s.Tokens), n, maxLen, len(data)-off-8)
		}
		s.Tokens = append(s.Tokens, strings.ReplaceAll(string(data[off+8:off+8+int(n)]), " ", "▁"))
		s.Scores = append(s.Scores, score)
		off += 8 + int(n)
	}
	if len(s.Tokens) < 3 {
		return nil, bad(off, "only %d tokens", len(s.Tokens))
	}
	s.Kind = SPM
	s.UNK, s.BOS, s.EOS = 0, 1, 2
	s.AddBOS, s.AddSpacePrefix = true, true
	return New(s)
}
