package cuda

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrDeviceFlag is wrapped for a --device value that is not auto, cpu or cuda.
var ErrDeviceFlag = errors.New("cuda: --device must be auto, cpu or cuda")

// Select interprets a --device flag: "cpu" → CPU; "cuda" → the GPU, or the
// error (wrapping ErrNoCUDA) saying why there is none; "auto" (or "") → the
// GPU when one loads, else the CPU with a one-line note on stderr.
func Select(flag string) (useGPU bool, err error) { return SelectW(flag, os.Stderr) }

// SelectW is Select writing its note to w (nil: no note).
func SelectW(flag string, w io.Writer) (bool, error) {
	return selectWith(flag, w, func() error { _, err := Open(); return err })
}

func selectWith(flag string, w io.Writer, open func() error) (bool, error) {
	switch flag {
	case "cpu":
		return false, nil
	case "cuda", "gpu":
		if err := open(); err != nil {
			return false, err
		}
		return true, nil
	case "auto", "":
		err := open()
		if err == nil {
			return true, nil
		}
		if w != nil {
			fmt.Fprintf(w, "note: --device auto: using the CPU (%s)\n", firstLine(err.Error()))
		}
		return false, nil
	}
	return false, fmt.Errorf("%w, not %q", ErrDeviceFlag, flag)
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
