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
		own += procJiffies(pid, m.children && pid == os.Getpid())
	}
	return busy, own
}

// procJiffies is the CPU time (user and system) pid has used, in jiffies;
// with children, also that of the children it has reaped.
func procJiffies(pid int, children bool) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) <= 14 {
		return 0
	}
	field := func(k int) int64 { n, _ := strconv.ParseInt(f[k], 10, 64); return n }
	j := field(11) + field(12) // utime, stime (fields 14 and 15)
	if children {
		j += field(13) + field(14) // cutime, cstime
	}
	return j
}

// cpuSeconds is the CPU time pids have used so far, in seconds (the
// kernel counts 100 jiffies a second, as the meter above assumes).
func cpuSeconds(pids ...int) float64 {
	var j int64
	for _, pid := range pids {
		j += procJiffies(pid, false)
	}
	return float64(j) / 100
}
