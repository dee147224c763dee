package cuda

import "unsafe"

func unsafePtr(b []byte, off int) unsafe.Pointer { return unsafe.Pointer(&b[off]) }
