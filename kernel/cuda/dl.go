//go:build (darwin || freebsd || linux || netbsd) && !android && !faketime

package cuda

import (
	"fmt"

	"github.com/ebitengine/purego"
)

func dlopen(path string) (uintptr, error) {
	return purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
}

// bind resolves every symbol of table in lib and registers the Go function
// variables; a missing symbol is an error naming it (never a panic).
func bind(lib uintptr, libName string, table map[string]any) error {
	for name, fptr := range table {
		sym, err := purego.Dlsym(lib, name)
		if err != nil || sym == 0 {
			return fmt.Errorf("%w: %s has no symbol %s (too old a version?)", ErrNoCUDA, libName, name)
		}
		purego.RegisterFunc(fptr, sym)
	}
	return nil
}

// bindOptional is bind for symbols that may be absent; it reports which were.
func bindOptional(lib uintptr, table map[string]any) (missing []string) {
	for name, fptr := range table {
		sym, err := purego.Dlsym(lib, name)
		if err != nil || sym == 0 {
			missing = append(missing, name)
			continue
		}
		purego.RegisterFunc(fptr, sym)
	}
	return missing
}
