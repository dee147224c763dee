package cuda

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// Args is a marshalled kernel argument list: one buffer holding every value
// at its natural alignment, and the array of pointers into it that
// cuLaunchKernel takes as kernelParams (void**).
type Args struct {
	buf  []uint64  // 8-byte aligned storage
	offs []int     // byte offset of each argument in buf
	ptrs []uintptr // &buf[offs[i]] — valid while Args is reachable
}

// Offsets returns the byte offset of each argument in the value buffer.
func (a *Args) Offsets() []int { return a.offs }

// Bytes returns the value buffer (little-endian, as the kernel reads it).
func (a *Args) Bytes() []byte {
	if len(a.buf) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&a.buf[0])), 8*len(a.buf))
}

// MarshalArgs lays out kernel arguments: each value at an offset aligned to
// its size (as a C compiler lays out a struct of them), and a pointer to each.
// Accepted types: Ptr, int32, uint32, int64, uint64, float32, float64.
func MarshalArgs(args ...any) (*Args, error) {
	type val struct {
		size int
		bits uint64
	}
	vals := make([]val, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case Ptr:
			vals[i] = val{8, uint64(v)}
		case uint64:
			vals[i] = val{8, v}
		case int64:
			vals[i] = val{8, uint64(v)}
		case float64:
			vals[i] = val{8, math.Float64bits(v)}
		case int32:
			vals[i] = val{4, uint64(uint32(v))}
		case uint32:
			vals[i] = val{4, uint64(v)}
		case float32:
			vals[i] = val{4, uint64(math.Float32bits(v))}
		case int:
			return nil, fmt.Errorf("argument %d: plain int has no fixed C size; use int32 or int64", i)
		default:
			return nil, fmt.Errorf("argument %d: unsupported type %T (want Ptr, int32, uint32, int64, uint64, float32, float64)", i, a)
		}
	}
	a := &Args{offs: make([]int, len(args))}
	off := 0
	for i, v := range vals {
		off = (off + v.size - 1) / v.size * v.size
		a.offs[i] = off
		off += v.size
	}
	a.buf = make([]uint64, (off+7)/8)
	b := a.Bytes()
	for i, v := range vals {
		if v.size == 8 {
			binary.LittleEndian.PutUint64(b[a.offs[i]:], v.bits)
		} else {
			binary.LittleEndian.PutUint32(b[a.offs[i]:], uint32(v.bits))
		}
	}
	a.ptrs = make([]uintptr, len(args))
	for i := range a.offs {
		a.ptrs[i] = uintptr(unsafe.Pointer(&b[a.offs[i]]))
	}
	return a, nil
}
