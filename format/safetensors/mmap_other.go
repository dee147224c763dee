//go:build !unix

package safetensors

import (
	"errors"
	"os"
)

func mmapFile(f *os.File, size int64) ([]byte, error) {
	return nil, errors.New("mmap unsupported")
}

func munmap(b []byte) error { return nil }

func dropPages(b []byte, off, n int64) {}

func preallocate(f any, size int64) {}
