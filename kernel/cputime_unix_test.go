//go:build unix

package kernel

import "syscall"

// cpuSeconds is the process's user+system CPU time. On a shared machine,
// FLOPs per CPU-second says how fast the kernel runs while it has a core,
// which wall time alone cannot when other jobs take turns on the cores.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
