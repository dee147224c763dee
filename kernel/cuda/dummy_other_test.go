//go:build !((darwin || freebsd || linux || netbsd) && !android && !faketime)

package cuda

func registerDummy(fptr any) {}
