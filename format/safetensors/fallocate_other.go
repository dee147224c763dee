//go:build !linux

package safetensors

func fallocate(fd int, size int64) error { return nil }
