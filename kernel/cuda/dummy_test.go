//go:build (darwin || freebsd || linux || netbsd) && !android && !faketime

package cuda

import (
	"reflect"

	"github.com/ebitengine/purego"
)

// registerDummy registers a fresh function variable of fptr's type (the
// real binding is left alone) at a dummy address that is never called.
func registerDummy(fptr any) {
	purego.RegisterFunc(reflect.New(reflect.TypeOf(fptr).Elem()).Interface(), 1)
}
