package cuda

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unsafe"
)

var nvrtc struct {
	path      string
	major     int
	minor     int
	version   func(major, minor *int32) int32
	create    func(prog *uintptr, src, name string, nh int32, hdrs, incs unsafe.Pointer) int32
	compile   func(prog uintptr, nopt int32, opts unsafe.Pointer) int32
	destroy   func(prog *uintptr) int32
	logSize   func(prog uintptr, n *uint64) int32
	log       func(prog uintptr, buf *byte) int32
	ptxSize   func(prog uintptr, n *uint64) int32
	ptx       func(prog uintptr, buf *byte) int32
	cubinSize func(prog uintptr, n *uint64) int32
	cubin     func(prog uintptr, buf *byte) int32
	errString func(r int32) *byte
}

var loadNVRTC = sync.OnceValue(func() error {
	h, path, err := newSearcher().load(libNVRTC.preferMajor(driverMajor()))
	if err != nil {
		return err
	}
	nvrtc.path = path
	if err := bind(h, path, nvrtcSymbols()); err != nil {
		return err
	}
	bindOptional(h, nvrtcOptional())
	var ma, mi int32
	if r := nvrtc.version(&ma, &mi); r != 0 {
		return fmt.Errorf("cuda: nvrtcVersion failed (%d)", r)
	}
	nvrtc.major, nvrtc.minor = int(ma), int(mi)
	return nil
})

func nvrtcCheck(call string, r int32) error {
	if r == 0 {
		return nil
	}
	msg := "unknown"
	if nvrtc.errString != nil {
		msg = cstr(nvrtc.errString(r))
	}
	return fmt.Errorf("cuda: %s: %s (%d)", call, msg, r)
}

// ErrCompile wraps NVRTC compile failures; the error text holds the log.
var ErrCompile = errors.New("cuda: NVRTC compile failed")

// CacheKey is the on-disk cache key of compiled device code: sha256 over the
// source, the target architecture, the compile options and the NVRTC
// version, so that any of them changing recompiles.
func CacheKey(src, arch string, opts []string, nvrtcVersion string) string {
	h := sha256.New()
	for _, s := range append([]string{src, arch, nvrtcVersion}, opts...) {
		fmt.Fprintf(h, "%d:%s\x00", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// CacheDir is where compiled kernels are kept: $SPARSIFY_CUDA_CACHE, else
// os.UserCacheDir()/sparsify/cuda.
func CacheDir() (string, error) {
	if d := os.Getenv("SPARSIFY_CUDA_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "sparsify", "cuda"), nil
}

// Compiled is the output of Compile.
type Compiled struct {
	Image  []byte // CUBIN (ELF) when NVRTC could produce one, else PTX
	Cached bool   // read from the disk cache
	Key    string
	Log    string
}

// Compile compiles CUDA C source for arch (e.g. "sm_90") with NVRTC, or
// returns the cached image for the same key. Extra opts (e.g. "-DX=1") are
// part of the key. The cache write is atomic (temp + rename); a cache that
// cannot be written is not an error.
func Compile(name, src, arch string, opts ...string) (*Compiled, error) {
	if err := loadNVRTC(); err != nil {
		return nil, err
	}
	ver := fmt.Sprintf("nvrtc %d.%d", nvrtc.major, nvrtc.minor)
	all := append([]string{"--gpu-architecture=" + arch, "--std=c++17", "-default-device"}, opts...)
	key := CacheKey(src, arch, all, ver)
	dir, derr := CacheDir()
	file := ""
	if derr == nil {
		file = filepath.Join(dir, key+".bin")
		if b, err := os.ReadFile(file); err == nil && len(b) > 0 {
			return &Compiled{Image: b, Cached: true, Key: key}, nil
		}
	}
	var prog uintptr
	if err := nvrtcCheck("nvrtcCreateProgram", nvrtc.create(&prog, src, name, 0, nil, nil)); err != nil {
		return nil, err
	}
	defer nvrtc.destroy(&prog)
	cs := make([][]byte, len(all))
	cp := make([]*byte, len(all))
	for i, o := range all {
		cs[i] = append([]byte(o), 0)
		cp[i] = &cs[i][0]
	}
	rc := nvrtc.compile(prog, int32(len(cp)), unsafe.Pointer(&cp[0]))
	var n uint64
	log := ""
	if nvrtc.logSize(prog, &n) == 0 && n > 1 {
		b := make([]byte, n)
		if nvrtc.log(prog, &b[0]) == 0 {
			log = strings.TrimRight(string(b), "\x00\n")
		}
	}
	if rc != 0 {
		return nil, fmt.Errorf("%w: %s for %s (%s): %v\n%s", ErrCompile, name, arch, ver, nvrtcCheck("nvrtcCompileProgram", rc), log)
	}
	var img []byte
	if nvrtc.cubinSize != nil && nvrtc.cubinSize(prog, &n) == 0 && n > 0 {
		img = make([]byte, n)
		if err := nvrtcCheck("nvrtcGetCUBIN", nvrtc.cubin(prog, &img[0])); err != nil {
			return nil, err
		}
	} else {
		if err := nvrtcCheck("nvrtcGetPTXSize", nvrtc.ptxSize(prog, &n)); err != nil {
			return nil, err
		}
		img = make([]byte, n)
		if err := nvrtcCheck("nvrtcGetPTX", nvrtc.ptx(prog, &img[0])); err != nil {
			return nil, err
		}
	}
	if file != "" {
		_ = writeAtomic(file, img)
	}
	return &Compiled{Image: img, Key: key, Log: log}, nil
}

// writeAtomic writes b to path through a temp file, fsync and rename.
func writeAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// nvrtcSymbols maps each required symbol to its Go function variable.
func nvrtcSymbols() map[string]any {
	return map[string]any{
		"nvrtcVersion": &nvrtc.version, "nvrtcCreateProgram": &nvrtc.create,
		"nvrtcCompileProgram": &nvrtc.compile, "nvrtcDestroyProgram": &nvrtc.destroy,
		"nvrtcGetProgramLogSize": &nvrtc.logSize, "nvrtcGetProgramLog": &nvrtc.log,
		"nvrtcGetPTXSize": &nvrtc.ptxSize, "nvrtcGetPTX": &nvrtc.ptx,
		"nvrtcGetErrorString": &nvrtc.errString,
	}
}

// nvrtcOptional maps each optional symbol to its Go function variable.
func nvrtcOptional() map[string]any {
	return map[string]any{"nvrtcGetCUBINSize": &nvrtc.cubinSize, "nvrtcGetCUBIN": &nvrtc.cubin}
}
