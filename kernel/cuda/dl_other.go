//go:build !((darwin || freebsd || linux || netbsd) && !android && !faketime)

package cuda

import (
	"fmt"
	"runtime"
)

// On other systems (Windows: nvcuda.dll loading is not implemented) every
// library is "not found", so callers fall back to the CPU.

func dlopen(path string) (uintptr, error) {
	return 0, fmt.Errorf("run-time library loading is not implemented on %s", runtime.GOOS)
}

func bind(lib uintptr, libName string, table map[string]any) error {
	return fmt.Errorf("%w: not implemented on %s", ErrNoCUDA, runtime.GOOS)
}

func bindOptional(lib uintptr, table map[string]any) []string { return nil }
