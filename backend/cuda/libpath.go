package cuda

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// libEnv is the environment the library search reads; tests replace it.
type libEnv struct {
	getenv func(string) string
	glob   func(string) ([]string, error)
	exists func(string) bool
}

func osLibEnv() libEnv {
	return libEnv{
		getenv: os.Getenv,
		glob:   filepath.Glob,
		exists: func(p string) bool { _, err := os.Stat(p); return err == nil },
	}
}

// targetDir is the toolkit's per-architecture folder name
// (/usr/local/cuda/targets/<name>/lib).
func targetDir() string {
	if runtime.GOARCH == "arm64" {
		return "sbsa-linux"
	}
	return "x86_64-linux"
}

// cudaRoots lists the toolkit installation roots to search, most specific
// first: $CUDA_HOME, $CUDA_PATH, /usr/local/cuda, then every
// /usr/local/cuda-X.Y, newest version first. Duplicates are removed.
func (e libEnv) cudaRoots() []string {
	var roots []string
	for _, v := range []string{"CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"} {
		if r := e.getenv(v); r != "" {
			roots = append(roots, filepath.Clean(r))
		}
	}
	roots = append(roots, "/usr/local/cuda")
	if vs, err := e.glob("/usr/local/cuda-*"); err == nil {
		slices.SortStableFunc(vs, func(a, b string) int { return compareVersions(versionOf(b), versionOf(a)) })
		roots = append(roots, vs...)
	}
	return dedupe(roots)
}

// toolkitLibDirs lists the directories searched for cuBLAS and NVRTC:
// $SDXL_CUDA_LIBDIR (a colon-separated list, for unusual installs such as
// pip wheels), then lib64 and targets/<arch>/lib of every root.
func (e libEnv) toolkitLibDirs() []string {
	var dirs []string
	if v := e.getenv("SDXL_CUDA_LIBDIR"); v != "" {
		for _, d := range strings.Split(v, ":") {
			if d != "" {
				dirs = append(dirs, filepath.Clean(d))
			}
		}
	}
	for _, r := range e.cudaRoots() {
		dirs = append(dirs, filepath.Join(r, "lib64"), filepath.Join(r, "targets", targetDir(), "lib"))
	}
	return dedupe(dirs)
}

// driverCandidates lists where libcuda.so.1 is tried: the bare soname first
// (the driver is installed system-wide and found through the loader path),
// then the usual distribution folders, and last the toolkit's
// forward-compatibility copy.
func (e libEnv) driverCandidates() []string {
	c := []string{"libcuda.so.1"}
	for _, d := range []string{"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/lib/wsl/lib"} {
		if p := filepath.Join(d, "libcuda.so.1"); e.exists(p) {
			c = append(c, p)
		}
	}
	for _, r := range e.cudaRoots() {
		if p := filepath.Join(r, "compat", "libcuda.so.1"); e.exists(p) {
			c = append(c, p)
		}
	}
	return c
}

// toolkitCandidates lists the paths tried for a toolkit library named
// base (e.g. "libcublas.so") with the given major versions in preference
// order: every existing dir/base.major, directory by directory (so that
// $CUDA_HOME wins), then the bare sonames for the loader path.
func (e libEnv) toolkitCandidates(base string, majors []int) []string {
	var c []string
	for _, d := range e.toolkitLibDirs() {
		for _, m := range majors {
			if p := filepath.Join(d, base+"."+strconv.Itoa(m)); e.exists(p) {
				c = append(c, p)
			}
		}
	}
	for _, m := range majors {
		c = append(c, base+"."+strconv.Itoa(m))
	}
	return c
}

// libraryMajors orders the toolkit major versions to try for a driver
// that supports CUDA driverVersion (e.g. 13000 for 13.0): versions the
// driver supports first, newest first, then newer ones as a last resort
// (they fail later with a clear error rather than not being found).
func libraryMajors(driverVersion int) []int {
	known := []int{13, 12}
	dm := driverVersion / 1000
	var ok, later []int
	for _, m := range known {
		if dm == 0 || m <= dm {
			ok = append(ok, m)
		} else {
			later = append(later, m)
		}
	}
	return append(ok, later...)
}

// includeCandidates lists folders that may hold the toolkit headers NVRTC
// needs for <mma.h>: next to the loaded NVRTC library first, then the
// roots, then /usr/include (distribution packages).
func (e libEnv) includeCandidates(nvrtcPath string) []string {
	var c []string
	if filepath.IsAbs(nvrtcPath) {
		d := filepath.Dir(nvrtcPath)
		c = append(c, filepath.Join(d, "..", "include"), filepath.Join(d, "..", "..", "include"))
	}
	for _, r := range e.cudaRoots() {
		c = append(c, filepath.Join(r, "include"), filepath.Join(r, "targets", targetDir(), "include"))
	}
	c = append(c, "/usr/include")
	for i := range c {
		c[i] = filepath.Clean(c[i])
	}
	return dedupe(c)
}

// findInclude returns the first candidate folder holding mma.h and
// cuda_fp16.h, or "".
func (e libEnv) findInclude(nvrtcPath string) string {
	for _, d := range e.includeCandidates(nvrtcPath) {
		if e.exists(filepath.Join(d, "mma.h")) && e.exists(filepath.Join(d, "cuda_fp16.h")) {
			return d
		}
	}
	return ""
}

// companions lists libraries to load before lib (from the same folder, by
// full path) so that its own dependencies resolve even when that folder is
// not on the loader path: cuBLAS needs cuBLASLt, NVRTC loads its builtins
// library at run time.
func (e libEnv) companions(libPath string) []string {
	if !filepath.IsAbs(libPath) {
		return nil
	}
	dir, base := filepath.Split(libPath)
	major := base[strings.LastIndex(base, ".")+1:]
	var pattern string
	switch {
	case strings.HasPrefix(base, "libcublas.so."):
		pattern = "libcublasLt.so." + major
	case strings.HasPrefix(base, "libnvrtc.so."):
		pattern = "libnvrtc-builtins.so." + major + "*"
	default:
		return nil
	}
	m, err := e.glob(filepath.Join(dir, pattern))
	if err != nil || len(m) == 0 {
		return nil
	}
	slices.Sort(m)
	return m[:1]
}

// versionOf extracts the numeric version of a folder such as
// "/usr/local/cuda-12.8" ([12 8]); nil when there is none.
func versionOf(path string) []int {
	base := filepath.Base(path)
	i := strings.LastIndex(base, "-")
	if i < 0 {
		return nil
	}
	var v []int
	for _, p := range strings.Split(base[i+1:], ".") {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil
		}
		v = append(v, n)
	}
	return v
}

func compareVersions(a, b []int) int {
	for i := range max(len(a), len(b)) {
		var x, y int
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			return x - y
		}
	}
	return 0
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	out := s[:0]
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}
