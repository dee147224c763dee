package cuda

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeTree makes empty files at the given relative paths under a temp root.
func fakeTree(t *testing.T, files ...string) string {
	root := t.TempDir()
	for _, f := range files {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("not an ELF"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestSearchOrder(t *testing.T) {
	root := fakeTree(t,
		"env/lib64/libcusparseLt.so.0",
		"sys/libcusparseLt.so.0",
		"site/nvidia/cusparselt/lib/libcusparseLt.so.0",
		"site2/nvidia/cusparselt/lib/libcusparseLt.so",
	)
	s := &searcher{
		envPath:  filepath.Join(root, "missing") + ":" + filepath.Join(root, "env"),
		sysDirs:  []string{filepath.Join(root, "sys"), filepath.Join(root, "sys")}, // duplicate dropped
		siteDirs: []string{filepath.Join(root, "site*")},
	}
	paths, looked := s.candidates(libCuSPARSELt, false)
	want := []string{
		filepath.Join(root, "env/lib64/libcusparseLt.so.0"),
		"libcusparseLt.so.0", "libcusparseLt.so", // the dynamic loader's own search
		filepath.Join(root, "sys/libcusparseLt.so.0"),
		filepath.Join(root, "site2/nvidia/cusparselt/lib/libcusparseLt.so"), // globs: newest (reverse) first
		filepath.Join(root, "site/nvidia/cusparselt/lib/libcusparseLt.so.0"),
	}
	if strings.Join(paths, "\n") != strings.Join(want, "\n") {
		t.Fatalf("candidates:\n%s\nwant:\n%s", strings.Join(paths, "\n"), strings.Join(want, "\n"))
	}
	if len(looked) != 4 || !strings.HasPrefix(looked[0], EnvPath) {
		t.Fatalf("looked = %q", looked)
	}

	// The first candidate that opens wins.
	var tried []string
	s.open = func(p string) (uintptr, error) {
		tried = append(tried, p)
		if strings.Contains(p, "/sys/") {
			return 42, nil
		}
		return 0, errors.New("nope")
	}
	h, p, err := s.load(libCuSPARSELt)
	if err != nil || h != 42 || p != want[3] {
		t.Fatalf("load = %d %q %v; tried %q", h, p, err, tried)
	}
}

func TestSearchNotFoundMessage(t *testing.T) {
	root := fakeTree(t, "site/nvidia/cublas/lib/libcublas.so.12")
	asked := 0
	s := &searcher{
		envPath:  filepath.Join(root, "nothing"),
		sysDirs:  []string{filepath.Join(root, "sys")},
		siteDirs: []string{filepath.Join(root, "site")},
		python: func() []string {
			asked++
			return []string{filepath.Join(root, "pyonly")}
		},
		open: func(p string) (uintptr, error) { return 0, errors.New("invalid ELF header") },
	}
	_, _, err := s.load(libCuBLAS)
	if !errors.Is(err, ErrNoCUDA) {
		t.Fatalf("err = %v, want ErrNoCUDA", err)
	}
	msg := err.Error()
	for _, want := range []string{"cuBLAS", "libcublas.so.12", EnvPath, "dynamic loader", "system folders",
		"pip wheels", "python3", filepath.Join(root, "site/nvidia/cublas/lib/libcublas.so.12") + ": invalid ELF header"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if asked != 1 {
		t.Errorf("python asked %d times, want once", asked)
	}
}

func TestSearchDriverHasNoPip(t *testing.T) {
	s := &searcher{siteDirs: []string{t.TempDir()}, python: func() []string { t.Fatal("python asked for the driver"); return nil },
		open: func(string) (uintptr, error) { return 0, errors.New("no") }}
	_, _, err := s.load(libDriver)
	if !errors.Is(err, ErrNoCUDA) || strings.Contains(err.Error(), "pip") {
		t.Fatalf("err = %v", err)
	}
}

func TestMarshalArgs(t *testing.T) {
	a, err := MarshalArgs(Ptr(0x1122334455667788), int32(-2), float32(1.5), uint64(7), uint32(9), float64(-0.25), int64(-3))
	if err != nil {
		t.Fatal(err)
	}
	wantOffs := []int{0, 8, 12, 16, 24, 32, 40}
	if got := a.Offsets(); !equalInts(got, wantOffs) {
		t.Fatalf("offsets %v, want %v", got, wantOffs)
	}
	b := a.Bytes()
	le := binary.LittleEndian
	if le.Uint64(b[0:]) != 0x1122334455667788 || int32(le.Uint32(b[8:])) != -2 ||
		math.Float32frombits(le.Uint32(b[12:])) != 1.5 || le.Uint64(b[16:]) != 7 || le.Uint32(b[24:]) != 9 ||
		math.Float64frombits(le.Uint64(b[32:])) != -0.25 || int64(le.Uint64(b[40:])) != -3 {
		t.Fatalf("values wrong: % x", b)
	}
	for i, o := range a.offs {
		if a.ptrs[i] != uintptr(unsafePtr(b, o)) {
			t.Fatalf("pointer %d does not point at its value", i)
		}
	}
	if _, err := MarshalArgs(int32(1), 5); err == nil || !strings.Contains(err.Error(), "plain int") {
		t.Fatalf("plain int: %v", err)
	}
	if _, err := MarshalArgs("s"); err == nil {
		t.Fatal("string accepted")
	}
	if a, err := MarshalArgs(); err != nil || len(a.Bytes()) != 0 {
		t.Fatalf("no args: %v", err)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCacheKey(t *testing.T) {
	base := CacheKey("src", "sm_90", []string{"-DA"}, "nvrtc 12.4")
	if len(base) != 64 {
		t.Fatalf("key %q not a sha256 hex", base)
	}
	if CacheKey("src", "sm_90", []string{"-DA"}, "nvrtc 12.4") != base {
		t.Fatal("key not deterministic")
	}
	for name, k := range map[string]string{
		"source":  CacheKey("src ", "sm_90", []string{"-DA"}, "nvrtc 12.4"),
		"arch":    CacheKey("src", "sm_80", []string{"-DA"}, "nvrtc 12.4"),
		"version": CacheKey("src", "sm_90", []string{"-DA"}, "nvrtc 12.5"),
		"options": CacheKey("src", "sm_90", []string{"-DB"}, "nvrtc 12.4"),
		"framing": CacheKey("srcs", "m_90", []string{"-DA"}, "nvrtc 12.4"),
	} {
		if k == base {
			t.Errorf("changing the %s keeps the key", name)
		}
	}
	t.Setenv("SPARSIFY_CUDA_CACHE", "/x/y")
	if d, _ := CacheDir(); d != "/x/y" {
		t.Fatalf("CacheDir = %q", d)
	}
}

func TestWriteAtomic(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a", "b.bin")
	if err := writeAtomic(p, []byte("cubin")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "cubin" {
		t.Fatalf("read %q", b)
	}
	ents, _ := os.ReadDir(filepath.Dir(p))
	if len(ents) != 1 {
		t.Fatalf("temp files left: %v", ents)
	}
}

func TestSelect(t *testing.T) {
	none := func() error { return errors.New("cuda: not available: CUDA driver library not found") }
	ok := func() error { return nil }
	var note bytes.Buffer
	if g, err := selectWith("cpu", &note, ok); g || err != nil {
		t.Fatal("cpu")
	}
	if g, err := selectWith("cuda", &note, none); g || err == nil {
		t.Fatal("cuda without GPU must fail")
	}
	if g, err := selectWith("cuda", &note, ok); !g || err != nil {
		t.Fatal("cuda with GPU")
	}
	if g, err := selectWith("auto", &note, none); g || err != nil || !strings.Contains(note.String(), "using the CPU") ||
		strings.Count(note.String(), "\n") != 1 {
		t.Fatalf("auto without GPU: %v %v %q", g, err, note.String())
	}
	if g, err := selectWith("auto", nil, ok); !g || err != nil {
		t.Fatal("auto with GPU")
	}
	if _, err := selectWith("tpu", nil, ok); !errors.Is(err, ErrDeviceFlag) {
		t.Fatalf("tpu: %v", err)
	}
}

func TestSplitHalves(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	rows, cols := 4, 1024
	x := make([]float32, rows*cols)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(9)-4)))
	}
	x[0], x[1] = 0, -1e-7
	for i := 2 * cols; i < 3*cols; i++ {
		x[i] = 0 // an all-zero row
	}
	for _, dt := range []DType{BF16, F16} {
		parts, scales, err := SplitHalves(x, rows, cols, dt, 3)
		if err != nil {
			t.Fatal(err)
		}
		for r := 0; r < rows; r++ {
			var mx float64
			for _, v := range x[r*cols : (r+1)*cols] {
				mx = max(mx, math.Abs(float64(v)))
			}
			for c := 0; c < cols; c++ {
				i := r*cols + c
				v := float64(x[i])
				var s float64
				for p := range parts {
					h := uint32(binary.LittleEndian.Uint16(parts[p][2*i:]))
					s += half(dt == BF16, h) * scales[p][r]
				}
				tol := 0x1p-24 * math.Abs(v)
				if dt == F16 {
					tol += 0x1p-44 * mx
				}
				if d := math.Abs(s - v); d > tol {
					t.Fatalf("%v: x[%d][%d] = %g rebuilt as %g", dt, r, c, v, s)
				}
			}
		}
	}
	if _, _, err := SplitHalves([]float32{float32(math.Inf(1))}, 1, 1, BF16, 3); err == nil {
		t.Fatal("Inf accepted")
	}
	if _, _, err := SplitHalves(x, rows, cols, F32, 3); err == nil {
		t.Fatal("F32 accepted")
	}
	if _, _, err := SplitHalves(x, rows, cols+1, BF16, 3); err == nil {
		t.Fatal("wrong shape accepted")
	}
}

func TestKernelSourceEmbedded(t *testing.T) {
	src, err := KernelSource("mmasp.cu")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"spmm_bf16", "spmm_f16", "m16n8k32.row.col.f32", "mmasp_emu.go", "E[(long long)j * N + 32 * rb + lane]"} {
		if !strings.Contains(src, want) {
			t.Errorf("kernel source lacks %q", want)
		}
	}
}

// TestSymbolSignatures registers every binding with purego against a dummy
// address (never called): a Go signature purego cannot marshal panics here,
// on the CPU, instead of on the GPU machine.
func TestSymbolSignatures(t *testing.T) {
	n := 0
	for _, tab := range []map[string]any{driverSymbols(), nvrtcSymbols(), nvrtcOptional(), cublasSymbols(), cublasOptional(), ltSymbols(), ltOptional()} {
		for name, fptr := range tab {
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("%s: %v", name, r)
					}
				}()
				registerDummy(fptr)
				n++
			}()
		}
	}
	if n < 60 {
		t.Fatalf("only %d symbols", n)
	}
}

func TestPreferMajor(t *testing.T) {
	got := libCuBLAS.preferMajor(12).names
	if got[0] != "libcublas.so.12" || len(got) != len(libCuBLAS.names) {
		t.Fatalf("preferMajor(12) = %v", got)
	}
	if got := libNVRTC.preferMajor(11).names; got[0] != "libnvrtc.so.11.2" {
		t.Fatalf("preferMajor(11) = %v", got)
	}
	if got := libCuBLAS.preferMajor(0).names; got[0] != libCuBLAS.names[0] {
		t.Fatalf("preferMajor(0) reordered: %v", got)
	}
	if libCuBLAS.names[0] != "libcublas.so.13" {
		t.Fatal("preferMajor modified the shared spec")
	}
}

// TestKernelMirrorsEmulation guards the promise that kernels/mmasp.cu and
// mmasp_emu.go stay in step: every index formula of the kernel must appear,
// spelled the same (spaces and casts aside), in the emulation.
func TestKernelMirrorsEmulation(t *testing.T) {
	cu, err := KernelSource("mmasp.cu")
	if err != nil {
		t.Fatal(err)
	}
	emu, err := os.ReadFile("mmasp_emu.go")
	if err != nil {
		t.Fatal(err)
	}
	norm := func(s string) string {
		s = strings.ReplaceAll(s, "(long long)", "")
		return strings.Join(strings.Fields(s), "")
	}
	ncu, nemu := norm(cu), norm(string(emu))
	for _, f := range []string{
		"j*N+32*rb+lane",                 // e register: reordered meta word
		"tok*xw+16*j+4*r+t",              // B fragment
		"r0*pw+8*j+t", "(r0+8)*pw+8*j+t", // A registers 0, 1
		"r0*pw+8*j+4+t", "(r0+8)*pw+8*j+4+t", // A registers 2, 3
		"32*rb+16*s+g",                   // A / D rows
		"tb*32+nt*8+g", "tb*32+nt*8+2*t", // B / D tokens
		"tok*N+row", "tok*N+row+8", "(tok+1)*N+row", "(tok+1)*N+row+8", // D stores
		"rb*32>=N", "j<K/32",
	} {
		if !strings.Contains(nemu, f) {
			t.Errorf("emulation lacks %q", f)
		}
		if !strings.Contains(ncu, f) {
			t.Errorf("kernel lacks %q", f)
		}
	}
	for _, p := range [][2]string{ // declarations: Go spelling, C spelling
		{"pw:=K/4", "intpw=K/4"}, {"xw:=K/2", "intxw=K/2"},
		{"g,t:=lane>>2,lane&3", "intg=lane>>2,t=lane&3"},
		{"rb:=bx*emuWarpsPerBlock+w", "intrb=blockIdx.x*WARPS_PER_BLOCK+(threadIdx.x>>5)"},
	} {
		if !strings.Contains(nemu, p[0]) || !strings.Contains(ncu, p[1]) {
			t.Errorf("declaration %q / %q not in both", p[0], p[1])
		}
	}
}
