// Package detect opens a checkpoint of any supported format, chosen by an
// explicit table of magic numbers and extensions (no registration).
package detect

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/sparsify/sparsify/format"
	"github.com/sparsify/sparsify/format/gguf"
	"github.com/sparsify/sparsify/format/safetensors"
)

// Kind names a checkpoint format.
type Kind string

const (
	SafetensorsDir  Kind = "safetensors-dir" // Hugging Face model directory
	Safetensors     Kind = "safetensors"     // single .safetensors file
	SafetensorsZstd Kind = "safetensors.zst" // zstd-compressed single file
	GGUF            Kind = "gguf"
)

// Detect tells which format path holds, from its first bytes and, failing
// that, its extension. It reads at most 9 bytes and opens nothing else.
func Detect(path string) (Kind, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if st.IsDir() || strings.HasSuffix(path, ".safetensors.index.json") {
		return SafetensorsDir, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var b [9]byte
	n, err := io.ReadFull(f, b[:])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return "", err
	}
	head := b[:n]
	switch {
	case strings.HasPrefix(string(head), gguf.Magic):
		return GGUF, nil
	case strings.HasPrefix(string(head), safetensors.ZstdMagic):
		return SafetensorsZstd, nil
	case n == 9 && binary.LittleEndian.Uint64(head) <= safetensors.MaxHeaderSize && head[8] == '{':
		return Safetensors, nil
	}
	// Not recognisable by content: trust the extension so that the format's
	// own reader reports what is wrong with the file.
	lower := strings.ToLower(path)
	switch {
	case strings.HasSuffix(lower, ".gguf"):
		return GGUF, nil
	case strings.HasSuffix(lower, ".safetensors.zst"):
		return SafetensorsZstd, nil
	case strings.HasSuffix(lower, ".safetensors"):
		return Safetensors, nil
	}
	return "", &format.FormatError{File: path, Offset: 0,
		Msg: fmt.Sprintf("unrecognised format (first bytes % x): not a safetensors file, GGUF file or model directory", head)}
}

// Open opens path as a format.Source: a directory (or its
// model.safetensors.index.json) with safetensors.OpenDir
// (*safetensors.Dir), a GGUF file with gguf.Open (*gguf.File), a safetensors
// file, plain or zstd-compressed, with safetensors.Open (*safetensors.File).
// Type-assert the result for format-specific accessors (Metadata, Config).
func Open(path string) (format.Source, error) {
	k, err := Detect(path)
	if err != nil {
		return nil, err
	}
	// never return a typed nil inside a non-nil interface
	switch k {
	case SafetensorsDir:
		if st, err := os.Stat(path); err == nil && !st.IsDir() {
			path = filepath.Dir(path) // the index file names its directory
		}
		d, err := safetensors.OpenDir(path)
		if err != nil {
			return nil, err
		}
		return d, nil
	case GGUF:
		g, err := gguf.Open(path)
		if err != nil {
			return nil, err
		}
		return g, nil
	}
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	return f, nil
}
