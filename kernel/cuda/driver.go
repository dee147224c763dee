package cuda

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// Driver API entry points (libcuda.so.1), resolved once by loadDriver.
var drv struct {
	path                      string
	cuInit                    func(flags uint32) int32
	cuDriverGetVersion        func(v *int32) int32
	cuDeviceGetCount          func(n *int32) int32
	cuDeviceGet               func(dev *int32, ordinal int32) int32
	cuDeviceGetName           func(name *byte, n int32, dev int32) int32
	cuDeviceGetAttribute      func(v *int32, attr int32, dev int32) int32
	cuDeviceTotalMem          func(b *uint64, dev int32) int32
	cuDevicePrimaryCtxRetain  func(ctx *uintptr, dev int32) int32
	cuDevicePrimaryCtxRelease func(dev int32) int32
	cuCtxSetCurrent           func(ctx uintptr) int32
	cuCtxSynchronize          func() int32
	cuMemAlloc                func(p *uint64, n uint64) int32
	cuMemFree                 func(p uint64) int32
	cuMemcpyHtoD              func(dst uint64, src unsafe.Pointer, n uint64) int32
	cuMemcpyDtoH              func(dst unsafe.Pointer, src uint64, n uint64) int32
	cuMemcpyHtoDAsync         func(dst uint64, src unsafe.Pointer, n uint64, s uintptr) int32
	cuMemcpyDtoHAsync         func(dst unsafe.Pointer, src uint64, n uint64, s uintptr) int32
	cuMemsetD8                func(dst uint64, v uint8, n uint64) int32
	cuStreamCreate            func(s *uintptr, flags uint32) int32
	cuStreamSynchronize       func(s uintptr) int32
	cuStreamDestroy           func(s uintptr) int32
	cuEventCreate             func(e *uintptr, flags uint32) int32
	cuEventRecord             func(e uintptr, s uintptr) int32
	cuEventSynchronize        func(e uintptr) int32
	cuEventElapsedTime        func(ms *float32, start, end uintptr) int32
	cuEventDestroy            func(e uintptr) int32
	cuModuleLoadData          func(m *uintptr, image unsafe.Pointer) int32
	cuModuleUnload            func(m uintptr) int32
	cuModuleGetFunction       func(f *uintptr, m uintptr, name string) int32
	cuLaunchKernel            func(f uintptr, gx, gy, gz, bx, by, bz, shared uint32, s uintptr, params unsafe.Pointer, extra unsafe.Pointer) int32
	cuGetErrorName            func(r int32, s **byte) int32
	cuGetErrorString          func(r int32, s **byte) int32
}

var loadDriver = sync.OnceValue(func() error {
	h, path, err := newSearcher().load(libDriver)
	if err != nil {
		return err
	}
	drv.path = path
	return bind(h, path, driverSymbols())
})

// cuErrNoDevice and cuErrNoDriver are the CUresult codes meaning "no GPU".
const (
	cuErrNoDevice       = 100
	cuErrInsufficientDr = 35
)

// Error is a failed driver API call.
type Error struct {
	Call string // the API function, e.g. "cuMemAlloc"
	Code int32  // CUresult
	Name string // e.g. "CUDA_ERROR_OUT_OF_MEMORY"
	Msg  string // cuGetErrorString
}

func (e *Error) Error() string {
	return fmt.Sprintf("cuda: %s: %s (%d): %s", e.Call, e.Name, e.Code, e.Msg)
}

// Is makes "no device" and "driver too old" errors match ErrNoCUDA.
func (e *Error) Is(target error) bool {
	return target == ErrNoCUDA && (e.Code == cuErrNoDevice || e.Code == cuErrInsufficientDr)
}

// cstr copies a NUL-terminated C string.
func cstr(p *byte) string {
	if p == nil {
		return ""
	}
	var b []byte
	for q := unsafe.Pointer(p); *(*byte)(q) != 0 && len(b) < 4096; q = unsafe.Add(q, 1) {
		b = append(b, *(*byte)(q))
	}
	return string(b)
}

// check turns a CUresult into an error naming the call (nil for success).
func check(call string, r int32) error {
	if r == 0 {
		return nil
	}
	e := &Error{Call: call, Code: r, Name: "CUDA_ERROR_" + fmt.Sprint(r), Msg: "unknown error"}
	if drv.cuGetErrorName != nil {
		var p *byte
		if drv.cuGetErrorName(r, &p) == 0 {
			e.Name = cstr(p)
		}
		if drv.cuGetErrorString(r, &p) == 0 {
			e.Msg = cstr(p)
		}
	}
	return e
}

// Device is one GPU with its primary context. Its methods may be called from
// any goroutine; each call makes the context current on the calling thread.
type Device struct {
	ord    int32
	ctx    uintptr
	name   string
	major  int
	minor  int
	memory uint64
	driver int
}

// Ptr is a device address.
type Ptr uint64

// Open initialises the driver and returns device 0 with its primary
// context. It runs once; later calls return the same device or error. A machine without the driver or a GPU gives an error
// wrapping ErrNoCUDA.
func Open() (*Device, error) { return openOnce() }

var openOnce = sync.OnceValues(func() (*Device, error) {
	if err := loadDriver(); err != nil {
		return nil, err
	}
	if err := check("cuInit", drv.cuInit(0)); err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrNoCUDA, err)
	}
	var n int32
	if err := check("cuDeviceGetCount", drv.cuDeviceGetCount(&n)); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: the driver (%s) sees no GPU", ErrNoCUDA, drv.path)
	}
	d := &Device{}
	if err := check("cuDeviceGet", drv.cuDeviceGet(&d.ord, 0)); err != nil {
		return nil, err
	}
	buf := make([]byte, 256)
	if err := check("cuDeviceGetName", drv.cuDeviceGetName(&buf[0], int32(len(buf)), d.ord)); err != nil {
		return nil, err
	}
	d.name = cstr(&buf[0])
	var maj, min, ver int32
	// CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75, MINOR = 76.
	if err := check("cuDeviceGetAttribute(COMPUTE_CAPABILITY_MAJOR)", drv.cuDeviceGetAttribute(&maj, 75, d.ord)); err != nil {
		return nil, err
	}
	if err := check("cuDeviceGetAttribute(COMPUTE_CAPABILITY_MINOR)", drv.cuDeviceGetAttribute(&min, 76, d.ord)); err != nil {
		return nil, err
	}
	d.major, d.minor = int(maj), int(min)
	if err := check("cuDeviceTotalMem", drv.cuDeviceTotalMem(&d.memory, d.ord)); err != nil {
		return nil, err
	}
	if err := check("cuDriverGetVersion", drv.cuDriverGetVersion(&ver)); err != nil {
		return nil, err
	}
	d.driver = int(ver)
	if err := check("cuDevicePrimaryCtxRetain", drv.cuDevicePrimaryCtxRetain(&d.ctx, d.ord)); err != nil {
		return nil, err
	}
	return d, nil
})

// Name is the GPU's marketing name, e.g. "NVIDIA H200".
func (d *Device) Name() string { return d.name }

// ComputeCapability returns the SM version, e.g. (9, 0) for Hopper.
func (d *Device) ComputeCapability() (major, minor int) { return d.major, d.minor }

// Arch is the NVRTC architecture name of the device, e.g. "sm_90".
func (d *Device) Arch() string { return fmt.Sprintf("sm_%d%d", d.major, d.minor) }

// Memory is the device's total memory in bytes.
func (d *Device) Memory() uint64 { return d.memory }

// DriverVersion is the CUDA driver version, e.g. 12040 for 12.4.
func (d *Device) DriverVersion() int { return d.driver }

// Do runs f with the device's context current on a locked OS thread. Every
// method below goes through it.
func (d *Device) Do(f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := check("cuCtxSetCurrent", drv.cuCtxSetCurrent(d.ctx)); err != nil {
		return err
	}
	return f()
}

// Alloc allocates n bytes of device memory.
func (d *Device) Alloc(n int) (Ptr, error) {
	if n <= 0 {
		return 0, fmt.Errorf("cuda: Alloc(%d): size must be positive", n)
	}
	var p uint64
	err := d.Do(func() error { return check(fmt.Sprintf("cuMemAlloc(%d bytes)", n), drv.cuMemAlloc(&p, uint64(n))) })
	return Ptr(p), err
}

// Free releases memory from Alloc; Free(0) does nothing.
func (d *Device) Free(p Ptr) error {
	if p == 0 {
		return nil
	}
	return d.Do(func() error { return check("cuMemFree", drv.cuMemFree(uint64(p))) })
}

// Memset sets n bytes at p to v.
func (d *Device) Memset(p Ptr, v byte, n int) error {
	return d.Do(func() error { return check("cuMemsetD8", drv.cuMemsetD8(uint64(p), v, uint64(n))) })
}

// CopyIn copies src to device memory at dst (synchronous).
func (d *Device) CopyIn(dst Ptr, src []byte) error {
	if len(src) == 0 {
		return nil
	}
	err := d.Do(func() error {
		return check("cuMemcpyHtoD", drv.cuMemcpyHtoD(uint64(dst), unsafe.Pointer(&src[0]), uint64(len(src))))
	})
	runtime.KeepAlive(src)
	return err
}

// CopyOut copies len(dst) bytes from device memory at src (synchronous).
func (d *Device) CopyOut(dst []byte, src Ptr) error {
	if len(dst) == 0 {
		return nil
	}
	err := d.Do(func() error {
		return check("cuMemcpyDtoH", drv.cuMemcpyDtoH(unsafe.Pointer(&dst[0]), uint64(src), uint64(len(dst))))
	})
	runtime.KeepAlive(dst)
	return err
}

// Upload allocates device memory and copies src into it.
func (d *Device) Upload(src []byte) (Ptr, error) {
	p, err := d.Alloc(max(len(src), 1))
	if err != nil {
		return 0, err
	}
	if err := d.CopyIn(p, src); err != nil {
		d.Free(p)
		return 0, err
	}
	return p, nil
}

// Synchronize waits for all work on the device.
func (d *Device) Synchronize() error {
	return d.Do(func() error { return check("cuCtxSynchronize", drv.cuCtxSynchronize()) })
}

// Stream is a CUDA stream; the zero Stream is the legacy default stream.
type Stream struct {
	d *Device
	h uintptr
}

// NewStream creates a non-blocking stream.
func (d *Device) NewStream() (*Stream, error) {
	s := &Stream{d: d}
	err := d.Do(func() error { return check("cuStreamCreate", drv.cuStreamCreate(&s.h, 1)) })
	return s, err
}

// Handle is the CUstream (0 for the default stream); libraries take it.
func (s *Stream) Handle() uintptr {
	if s == nil {
		return 0
	}
	return s.h
}

// Synchronize waits for the stream's work.
func (s *Stream) Synchronize() error {
	return s.d.Do(func() error { return check("cuStreamSynchronize", drv.cuStreamSynchronize(s.h)) })
}

// CopyInAsync queues a host-to-device copy; src must stay untouched until the
// stream is synchronized.
func (s *Stream) CopyInAsync(dst Ptr, src []byte) error {
	if len(src) == 0 {
		return nil
	}
	return s.d.Do(func() error {
		return check("cuMemcpyHtoDAsync", drv.cuMemcpyHtoDAsync(uint64(dst), unsafe.Pointer(&src[0]), uint64(len(src)), s.h))
	})
}

// CopyOutAsync queues a device-to-host copy; dst is valid after Synchronize.
func (s *Stream) CopyOutAsync(dst []byte, src Ptr) error {
	if len(dst) == 0 {
		return nil
	}
	return s.d.Do(func() error {
		return check("cuMemcpyDtoHAsync", drv.cuMemcpyDtoHAsync(unsafe.Pointer(&dst[0]), uint64(src), uint64(len(dst)), s.h))
	})
}

// Destroy releases the stream.
func (s *Stream) Destroy() error {
	if s == nil || s.h == 0 {
		return nil
	}
	err := s.d.Do(func() error { return check("cuStreamDestroy", drv.cuStreamDestroy(s.h)) })
	s.h = 0
	return err
}

// Event is a CUDA event for timing.
type Event struct {
	d *Device
	h uintptr
}

// NewEvent creates a timing event.
func (d *Device) NewEvent() (*Event, error) {
	e := &Event{d: d}
	err := d.Do(func() error { return check("cuEventCreate", drv.cuEventCreate(&e.h, 0)) })
	return e, err
}

// Record records the event on s (nil: default stream).
func (e *Event) Record(s *Stream) error {
	return e.d.Do(func() error { return check("cuEventRecord", drv.cuEventRecord(e.h, s.Handle())) })
}

// Synchronize waits for the event.
func (e *Event) Synchronize() error {
	return e.d.Do(func() error { return check("cuEventSynchronize", drv.cuEventSynchronize(e.h)) })
}

// Since returns the milliseconds between start and e (both recorded and
// complete).
func (e *Event) Since(start *Event) (float32, error) {
	var ms float32
	err := e.d.Do(func() error { return check("cuEventElapsedTime", drv.cuEventElapsedTime(&ms, start.h, e.h)) })
	return ms, err
}

// Destroy releases the event.
func (e *Event) Destroy() error {
	if e == nil || e.h == 0 {
		return nil
	}
	err := e.d.Do(func() error { return check("cuEventDestroy", drv.cuEventDestroy(e.h)) })
	e.h = 0
	return err
}

// Module is loaded device code (CUBIN or PTX).
type Module struct {
	d *Device
	h uintptr
}

// LoadModule loads a CUBIN or NUL-terminated PTX image.
func (d *Device) LoadModule(image []byte) (*Module, error) {
	if len(image) == 0 {
		return nil, errors.New("cuda: LoadModule: empty image")
	}
	if image[len(image)-1] != 0 && string(image[:min(len(image), 4)]) != "\x7fELF" {
		image = append(image[:len(image):len(image)], 0) // PTX text must be NUL-terminated
	}
	m := &Module{d: d}
	err := d.Do(func() error { return check("cuModuleLoadData", drv.cuModuleLoadData(&m.h, unsafe.Pointer(&image[0]))) })
	runtime.KeepAlive(image)
	return m, err
}

// Function looks up a kernel by its (extern "C") name.
func (m *Module) Function(name string) (*Function, error) {
	f := &Function{d: m.d, name: name}
	err := m.d.Do(func() error { return check("cuModuleGetFunction("+name+")", drv.cuModuleGetFunction(&f.h, m.h, name)) })
	return f, err
}

// Unload releases the module.
func (m *Module) Unload() error {
	if m == nil || m.h == 0 {
		return nil
	}
	err := m.d.Do(func() error { return check("cuModuleUnload", drv.cuModuleUnload(m.h)) })
	m.h = 0
	return err
}

// Function is a kernel in a loaded Module.
type Function struct {
	d    *Device
	h    uintptr
	name string
}

// Dim3 is a grid or block size.
type Dim3 struct{ X, Y, Z int }

// Launch queues f on s (nil: default stream) with the given grid, block and
// dynamic shared memory. Arguments are marshalled by MarshalArgs: Ptr,
// int32, uint32, int64, uint64, float32, float64 (a plain int is refused:
// its C size would be ambiguous).
func (f *Function) Launch(grid, block Dim3, shared int, s *Stream, args ...any) error {
	pa, err := MarshalArgs(args...)
	if err != nil {
		return fmt.Errorf("cuda: launch %s: %w", f.name, err)
	}
	g, b := grid.norm(), block.norm()
	if g.X <= 0 || g.Y <= 0 || g.Z <= 0 || b.X <= 0 || b.Y <= 0 || b.Z <= 0 || b.X*b.Y*b.Z > 1024 {
		return fmt.Errorf("cuda: launch %s: bad grid %v / block %v", f.name, grid, block)
	}
	var params unsafe.Pointer
	if len(pa.ptrs) > 0 {
		params = unsafe.Pointer(&pa.ptrs[0])
	}
	err = f.d.Do(func() error {
		return check("cuLaunchKernel("+f.name+")", drv.cuLaunchKernel(f.h, uint32(g.X), uint32(g.Y), uint32(g.Z),
			uint32(b.X), uint32(b.Y), uint32(b.Z), uint32(shared), s.Handle(), params, nil))
	})
	runtime.KeepAlive(pa)
	return err
}

func (d Dim3) norm() Dim3 {
	if d.Y == 0 {
		d.Y = 1
	}
	if d.Z == 0 {
		d.Z = 1
	}
	return d
}

// driverSymbols maps each required symbol to its Go function variable.
func driverSymbols() map[string]any {
	return map[string]any{
		"cuInit": &drv.cuInit, "cuDriverGetVersion": &drv.cuDriverGetVersion,
		"cuDeviceGetCount": &drv.cuDeviceGetCount, "cuDeviceGet": &drv.cuDeviceGet,
		"cuDeviceGetName": &drv.cuDeviceGetName, "cuDeviceGetAttribute": &drv.cuDeviceGetAttribute,
		"cuDeviceTotalMem_v2":          &drv.cuDeviceTotalMem,
		"cuDevicePrimaryCtxRetain":     &drv.cuDevicePrimaryCtxRetain,
		"cuDevicePrimaryCtxRelease_v2": &drv.cuDevicePrimaryCtxRelease,
		"cuCtxSetCurrent":              &drv.cuCtxSetCurrent, "cuCtxSynchronize": &drv.cuCtxSynchronize,
		"cuMemAlloc_v2": &drv.cuMemAlloc, "cuMemFree_v2": &drv.cuMemFree,
		"cuMemcpyHtoD_v2": &drv.cuMemcpyHtoD, "cuMemcpyDtoH_v2": &drv.cuMemcpyDtoH,
		"cuMemcpyHtoDAsync_v2": &drv.cuMemcpyHtoDAsync, "cuMemcpyDtoHAsync_v2": &drv.cuMemcpyDtoHAsync,
		"cuMemsetD8_v2":  &drv.cuMemsetD8,
		"cuStreamCreate": &drv.cuStreamCreate, "cuStreamSynchronize": &drv.cuStreamSynchronize,
		"cuStreamDestroy_v2": &drv.cuStreamDestroy,
		"cuEventCreate":      &drv.cuEventCreate, "cuEventRecord": &drv.cuEventRecord,
		"cuEventSynchronize": &drv.cuEventSynchronize, "cuEventElapsedTime": &drv.cuEventElapsedTime,
		"cuEventDestroy_v2": &drv.cuEventDestroy,
		"cuModuleLoadData":  &drv.cuModuleLoadData, "cuModuleUnload": &drv.cuModuleUnload,
		"cuModuleGetFunction": &drv.cuModuleGetFunction, "cuLaunchKernel": &drv.cuLaunchKernel,
		"cuGetErrorName": &drv.cuGetErrorName, "cuGetErrorString": &drv.cuGetErrorString,
	}
}
