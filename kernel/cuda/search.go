package cuda

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// ErrNoCUDA is wrapped by every error that means "no usable NVIDIA GPU or
// library here": callers fall back to the CPU when errors.Is(err, ErrNoCUDA).
var ErrNoCUDA = errors.New("cuda: not available")

// EnvPath names the environment variable holding extra library folders
// (colon-separated), searched first: each folder, its lib64/ and its lib/.
const EnvPath = "SPARSIFY_CUDA_PATH"

// libSpec describes one NVIDIA shared library: the file names to look for,
// newest first, and the folder of its pip wheel under site-packages.
type libSpec struct {
	what  string   // human name for messages
	names []string // file names (sonames first)
	pip   []string // folders relative to site-packages
}

var (
	libDriver = libSpec{what: "CUDA driver", names: []string{"libcuda.so.1", "libcuda.so"}}
	libNVRTC  = libSpec{what: "NVRTC", names: []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"},
		pip: []string{"nvidia/cuda_nvrtc/lib", "nvidia/cu13/lib"}}
	libCuBLAS = libSpec{what: "cuBLAS", names: []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"},
		pip: []string{"nvidia/cublas/lib", "nvidia/cu13/lib"}}
	libCuSPARSELt = libSpec{what: "cuSPARSELt", names: []string{"libcusparseLt.so.0", "libcusparseLt.so"},
		pip: []string{"nvidia/cusparselt/lib", "cusparselt/lib"}}
)

// searcher finds libraries. Its fields are the environment it looks at, so
// tests can point it at fake directory trees.
type searcher struct {
	envPath  string   // value of SPARSIFY_CUDA_PATH
	ldPath   string   // value of LD_LIBRARY_PATH
	sysDirs  []string // system folders (globs allowed)
	siteDirs []string // site-packages folders (globs allowed)
	// python returns more site-packages folders (asked once, lazily, only
	// when the other places failed); nil: none.
	python func() []string
	// open loads one library (a path, or a bare name for the dynamic
	// loader's own search); nil: dlopen.
	open func(path string) (uintptr, error)
}

// defaultSysDirs are the usual system library folders.
var defaultSysDirs = []string{
	"/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib",
	"/usr/local/cuda-*/lib64", "/usr/local/cuda-*/targets/x86_64-linux/lib",
	"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
	"/usr/lib/wsl/lib", "/opt/cuda/lib64", "/usr/local/nvidia/lib64", "/usr/local/nvidia/lib",
}

// defaultSiteDirs are site-packages folders pip installs nvidia-* wheels in.
func defaultSiteDirs() []string {
	d := []string{
		"/usr/lib/python3/dist-packages", "/usr/local/lib/python3*/dist-packages",
		"/usr/local/lib/python3*/site-packages", "/usr/lib/python3*/site-packages",
		"/opt/conda/lib/python3*/site-packages", "/opt/venv/lib/python3*/site-packages",
	}
	for _, env := range []string{"VIRTUAL_ENV", "CONDA_PREFIX"} {
		if p := os.Getenv(env); p != "" {
			d = append([]string{filepath.Join(p, "lib/python3*/site-packages")}, d...)
		}
	}
	if h, err := os.UserHomeDir(); err == nil {
		d = append(d, filepath.Join(h, ".local/lib/python3*/site-packages"))
	}
	return d
}

// pythonSitePackages asks python3 (if present) for its site-packages folders
// and sys.path, with a short timeout.
func pythonSitePackages() []string {
	py, err := exec.LookPath("python3")
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "-c",
		"import site,sys\nfor p in site.getsitepackages()+[site.getusersitepackages()]+sys.path: print(p)").Output()
	if err != nil {
		return nil
	}
	var dirs []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" && filepath.IsAbs(l) {
			dirs = append(dirs, l)
		}
	}
	return dirs
}

// preferMajor reorders lib's names so that those of CUDA major version
// major (e.g. libcublas.so.12 for a 12.x driver) come first: a library newer
// than the driver cannot run on it.
func (lib libSpec) preferMajor(major int) libSpec {
	if major <= 0 {
		return lib
	}
	suffix := fmt.Sprintf(".so.%d", major)
	var first, rest []string
	for _, n := range lib.names {
		if strings.HasSuffix(n, suffix) || strings.Contains(n, suffix+".") {
			first = append(first, n)
		} else {
			rest = append(rest, n)
		}
	}
	lib.names = append(first, rest...)
	return lib
}

// driverMajor is the CUDA major version the loaded driver supports (0 when
// no driver is loaded).
func driverMajor() int {
	if loadDriver() != nil || drv.cuDriverGetVersion == nil {
		return 0
	}
	var v int32
	if drv.cuDriverGetVersion(&v) != 0 {
		return 0
	}
	return int(v) / 1000
}

func newSearcher() *searcher {
	return &searcher{
		envPath:  os.Getenv(EnvPath),
		ldPath:   os.Getenv("LD_LIBRARY_PATH"),
		sysDirs:  defaultSysDirs,
		siteDirs: defaultSiteDirs(),
		python:   sync.OnceValue(pythonSitePackages),
	}
}

// expand turns globbed folders into existing folders, keeping order and
// dropping duplicates.
func expand(globs []string, seen map[string]bool) []string {
	var out []string
	for _, g := range globs {
		ms := []string{g}
		if strings.ContainsAny(g, "*?[") {
			ms, _ = filepath.Glob(g)
			sort.Sort(sort.Reverse(sort.StringSlice(ms))) // newest version first
		}
		for _, m := range ms {
			m = filepath.Clean(m)
			if seen[m] {
				continue
			}
			if st, err := os.Stat(m); err == nil && st.IsDir() {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	return out
}

// stage is one place a library is looked for.
type stage struct {
	where string   // for messages
	dirs  []string // folders (empty for the loader stage)
}

// stages lists, in order, where lib is looked for: SPARSIFY_CUDA_PATH, the
// dynamic loader (ld cache, LD_LIBRARY_PATH), LD_LIBRARY_PATH and system
// folders explicitly, then the pip wheel folders under every site-packages.
func (s *searcher) stages(lib libSpec, withPython bool) []stage {
	seen := map[string]bool{}
	var st []stage
	if s.envPath != "" {
		var g []string
		for _, p := range filepath.SplitList(s.envPath) {
			if p != "" {
				g = append(g, p, filepath.Join(p, "lib64"), filepath.Join(p, "lib"))
			}
		}
		st = append(st, stage{where: EnvPath, dirs: expand(g, seen)})
	}
	st = append(st, stage{where: "dynamic loader (ld.so cache, LD_LIBRARY_PATH)"})
	sys := append(filepath.SplitList(s.ldPath), s.sysDirs...)
	st = append(st, stage{where: "system folders", dirs: expand(sys, seen)})
	if len(lib.pip) > 0 {
		site := s.siteDirs
		where := "pip wheels (site-packages)"
		if withPython && s.python != nil {
			site = s.python()
			where = "pip wheels (python3 site.getsitepackages/sys.path)"
		}
		var g []string
		for _, d := range site {
			for _, p := range lib.pip {
				g = append(g, filepath.Join(d, p))
			}
		}
		st = append(st, stage{where: where, dirs: expand(g, seen)})
	}
	return st
}

// candidates returns every path tried for lib, in order, and for each stage
// the folders looked in (for the error message). Bare names stand for the
// dynamic loader's own search.
func (s *searcher) candidates(lib libSpec, withPython bool) (paths []string, looked []string) {
	for _, st := range s.stages(lib, withPython) {
		if st.dirs == nil && !strings.HasPrefix(st.where, "dynamic") {
			looked = append(looked, st.where+": (no such folder)")
			continue
		}
		if st.dirs == nil {
			paths = append(paths, lib.names...)
			looked = append(looked, st.where+": "+strings.Join(lib.names, ", "))
			continue
		}
		looked = append(looked, st.where+": "+strings.Join(st.dirs, ", "))
		for _, d := range st.dirs {
			for _, n := range lib.names {
				p := filepath.Join(d, n)
				if _, err := os.Stat(p); err == nil {
					paths = append(paths, p)
				}
			}
		}
	}
	return paths, looked
}

// load finds and opens lib. It returns the handle and the path opened, or an
// error wrapping ErrNoCUDA that names every place looked in and why each
// file found could not be opened.
func (s *searcher) load(lib libSpec) (uintptr, string, error) {
	open := s.open
	if open == nil {
		open = dlopen
	}
	var failures []string
	try := func(withPython bool) (uintptr, string, []string) {
		paths, looked := s.candidates(lib, withPython)
		for _, p := range paths {
			h, err := open(p)
			if err == nil {
				return h, p, nil
			}
			if filepath.IsAbs(p) { // bare-name misses are the normal case
				failures = append(failures, fmt.Sprintf("%s: %v", p, err))
			}
		}
		return 0, "", looked
	}
	h, p, looked := try(false)
	if h != 0 {
		return h, p, nil
	}
	if len(lib.pip) > 0 && s.python != nil {
		var more []string
		if h, p, more = try(true); h != 0 {
			return h, p, nil
		}
		looked = append(looked, more[len(more)-1])
	}
	msg := fmt.Sprintf("%s library (%s) not found; looked in: %s", lib.what, strings.Join(lib.names, " or "), strings.Join(looked, "; "))
	if len(failures) > 0 {
		msg += "; found but could not load: " + strings.Join(failures, "; ")
	}
	msg += "; set " + EnvPath + " to the folder holding it"
	return 0, "", fmt.Errorf("%w: %s", ErrNoCUDA, msg)
}
