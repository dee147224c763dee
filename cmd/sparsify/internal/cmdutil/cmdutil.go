// Package cmdutil holds what every sparsify command shares: I/O streams, exit
// codes and the error types that choose them.
package cmdutil

import (
	"errors"
	"io"
	"os"

	"golang.org/x/term"
)

// Exit codes of the sparsify command.
const (
	ExitOK     = 0 // success
	ExitFailed = 1 // the input was checked and found wanting (verify)
	ExitUsage  = 2 // bad usage or unreadable input
	ExitCancel = 130
)

// IO are the streams a command writes to.
type IO struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// System returns the process's standard streams.
func System() *IO { return &IO{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr} }

// IsTerminal reports whether w is a terminal (progress bars) or not (plain lines).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// FlagError is a usage error: the command's usage is printed and the exit code is 2.
type FlagError struct{ Err error }

func (e *FlagError) Error() string { return e.Err.Error() }
func (e *FlagError) Unwrap() error { return e.Err }

// ErrFailed is returned (wrapped) by commands whose check found violations; it
// maps to exit code 1 after the command has printed its report.
var ErrFailed = errors.New("check failed")

// ErrSilent means the command already printed its message; only the exit code remains.
type SilentError struct{ Code int }

func (e *SilentError) Error() string { return "exit" }
