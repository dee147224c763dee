//go:build unix

package safetensors

import (
	"os"

	"golang.org/x/sys/unix"
)

// mmapFile maps size bytes of f read-only; nil, nil for an empty file.
func mmapFile(f *os.File, size int64) ([]byte, error) {
	if size <= 0 || size != int64(int(size)) {
		return nil, nil
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	return data, nil
}

func munmap(b []byte) error { return unix.Munmap(b) }

// dropPages releases the pages of b[off:off+n] from the process's mapping
// (MADV_DONTNEED). For a read-only file mapping this is always safe: a later
// access faults the same bytes back in from the page cache.
func dropPages(b []byte, off, n int64) {
	page := int64(os.Getpagesize())
	start := off &^ (page - 1)
	end := min((off+n+page-1)&^(page-1), int64(len(b)))
	if start >= end {
		return
	}
	_ = unix.Madvise(b[start:end], unix.MADV_DONTNEED)
}

// preallocate reserves size bytes for f where the file system supports it,
// so that tensors written concurrently at their offsets land in contiguous
// extents. Errors are ignored: it is only a hint.
func preallocate(f any, size int64) {
	if fd, ok := f.(interface{ Fd() uintptr }); ok && size > 0 {
		_ = fallocate(int(fd.Fd()), size)
	}
}
