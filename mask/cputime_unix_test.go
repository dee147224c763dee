//go:build unix

package mask

import "syscall"

// cpuSeconds is the process's user+system CPU time: on a shared machine it
// says how long the work took while it had the cores, which wall time alone
// cannot when other jobs take turns.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
