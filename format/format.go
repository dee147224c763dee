// Package format holds what the checkpoint formats share: data types, tensor
// descriptions, the Source abstraction every reader implements, and errors.
//
// Shapes are always row-major, outermost dimension first (PyTorch/safetensors
// order). Readers of formats that store the fastest dimension first (GGUF)
// reverse their dimensions before exposing them. A 2-D linear weight is
// therefore [out_features, in_features] whatever file it came from.
package format

import (
	"errors"
	"fmt"
	"io"
)

// Sentinel errors. Every error a reader returns for bad input wraps ErrFormat;
// valid but unimplemented input wraps ErrUnsupported.
var (
	ErrFormat      = errors.New("invalid format")
	ErrUnsupported = errors.New("unsupported")
	ErrNotFound    = errors.New("tensor not found")
)

// FormatError reports invalid input at a byte offset of a file, for one tensor
// where that applies. It unwraps to ErrFormat.
type FormatError struct {
	File   string // path of the file, "" if unknown
	Tensor string // tensor name, "" if not about one tensor
	Offset int64  // byte offset in File, -1 if unknown
	Msg    string
}

func (e *FormatError) Error() string {
	s := ""
	if e.File != "" {
		s = e.File + ": "
	}
	if e.Tensor != "" {
		s += fmt.Sprintf("tensor %q: ", e.Tensor)
	}
	if e.Offset >= 0 {
		s += fmt.Sprintf("at byte %d (%#x): ", e.Offset, e.Offset)
	}
	return s + e.Msg
}

func (e *FormatError) Unwrap() error { return ErrFormat }

// TensorInfo describes one stored tensor. It is read from a header, never from
// the tensor's bytes.
type TensorInfo struct {
	Name   string
	DType  DType
	Shape  []int64 // row-major, outermost first
	Size   int64   // number of stored bytes
	File   string  // file that holds the bytes (a shard of a directory)
	Offset int64   // absolute byte offset of the data in File
}

// NumElements is the product of the shape (1 for a scalar). Readers validate
// shapes so that this cannot overflow for a TensorInfo they return.
func (ti TensorInfo) NumElements() int64 {
	n := int64(1)
	for _, d := range ti.Shape {
		n *= d
	}
	return n
}

// Source is a read-only checkpoint: tensor headers read eagerly, bytes on demand.
// Implementations are safe for concurrent use by multiple goroutines.
type Source interface {
	// Tensors lists every tensor in storage order.
	Tensors() []TensorInfo
	// Open returns the raw stored bytes of one tensor (exactly Size bytes).
	// The reader may be used concurrently with readers of other tensors.
	Open(name string) (io.ReadCloser, error)
	// Close releases files and mappings. Readers returned by Open are invalid afterwards.
	Close() error
}

// Lookup finds a tensor by name in a Source.
func Lookup(src Source, name string) (TensorInfo, bool) {
	for _, ti := range src.Tensors() {
		if ti.Name == name {
			return ti, true
		}
	}
	return TensorInfo{}, false
}

// ReadAll reads the raw bytes of one tensor.
func ReadAll(src Source, name string) ([]byte, TensorInfo, error) {
	ti, ok := Lookup(src, name)
	if !ok {
		return nil, ti, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	rc, err := src.Open(name)
	if err != nil {
		return nil, ti, err
	}
	defer rc.Close()
	buf := make([]byte, ti.Size)
	if _, err := io.ReadFull(rc, buf); err != nil {
		return nil, ti, &FormatError{File: ti.File, Tensor: name, Offset: ti.Offset, Msg: fmt.Sprintf("reading %d bytes: %v", ti.Size, err)}
	}
	return buf, ti, nil
}
