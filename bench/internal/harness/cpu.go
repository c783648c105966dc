package harness

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// cpuMeter measures how much of the machine other processes (not the
// harness, its servers or its workers) used during an interval, so a
// result taken on a busy shared machine can be told apart.
type cpuMeter struct {
	pids     []int
	children bool  // also count the harness's reaped children (cutime, cstime)
	busy     int64 // jiffies, all CPUs
	own      int64 // jiffies, our processes
	start    time.Time
}

func startCPUMeter(pids ...int) *cpuMeter {
	m := &cpuMeter{pids: append(pids, os.Getpid()), start: time.Now()}
	m.busy, m.own = m.sample()
	return m
}

// startCPUMeterChildren is startCPUMeter that also counts as ours the
// children the harness runs and reaps meanwhile (redis-benchmark).
func startCPUMeterChildren(pids ...int) *cpuMeter {
	m := &cpuMeter{pids: append(pids, os.Getpid()), children: true, start: time.Now()}
	m.busy, m.own = m.sample()
	return m
}

// foreign returns the share (0..1) of the machine's CPU time that other
// processes used since the meter started.
func (m *cpuMeter) foreign() float64 {
	busy, own := m.sample()
	capacity := time.Since(m.start).Seconds() * 100 * float64(runtime.NumCPU())
	if capacity <= 0 {
		return 0
	}
	return max(float64((busy-m.busy)-(own-m.own)), 0) / capacity
}

func (m *cpuMeter) sample() (busy, own int64) {
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		for i, v := range f[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			if i != 3 && i != 4 && i < 8 { // skip idle and iowait; guest is in user
				busy += n
			}
		}
	}
	for _, pid := range m.pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			f := strings.Fields(s[i+1:])
			if len(f) > 12 {
				u, _ := strconv.ParseInt(f[11], 10, 64) // utime (field 14)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				own += u + st
				if m.children && pid == os.Getpid() && len(f) > 14 {
					cu, _ := strconv.ParseInt(f[13], 10, 64) // cutime (field 16)
					cs, _ := strconv.ParseInt(f[14], 10, 64)
					own += cu + cs
				}
			}
		}
	}
	return busy, own
}
