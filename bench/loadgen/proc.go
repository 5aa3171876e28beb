package loadgen

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat;
// it is 100 on every Linux architecture Go supports.
const clockTicks = 100

// ProcSample is one reading of a process's resource use.
type ProcSample struct {
	CPU   time.Duration // utime + stime
	RSS   int64         // VmRSS, bytes
	HWM   int64         // VmHWM (peak RSS since start or the last reset), bytes
	Taken time.Time
}

// ReadProc reads /proc/PID/stat and /proc/PID/status.
func ReadProc(pid int) (ProcSample, error) {
	s := ProcSample{Taken: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("read cpu time of pid %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces; fields are counted after
	// its closing parenthesis, where field 3 (state) starts.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("read cpu time of pid %d: malformed stat", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("read cpu time of pid %d: stat has %d fields", pid, len(f)+2)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("read cpu time of pid %d: bad utime/stime %q %q", pid, f[11], f[12])
	}
	s.CPU = time.Duration(utime+stime) * time.Second / clockTicks

	status, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	defer status.Close()
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			s.RSS = kib(line)
		case strings.HasPrefix(line, "VmHWM:"):
			s.HWM = kib(line)
		}
	}
	if err := sc.Err(); err != nil {
		return s, fmt.Errorf("read memory of pid %d: %w", pid, err)
	}
	return s, nil
}

func kib(line string) int64 {
	f := strings.Fields(line)
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.ParseInt(f[1], 10, 64)
	return n << 10
}

// ResetPeakRSS asks the kernel to restart VmHWM from the current RSS, so
// a run's peak is its own. It needs write access to /proc/PID/clear_refs
// (same user); failure is not an error for callers, who then fall back to
// the sampled peak.
func ResetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// ProcWatcher samples a process periodically during a run.
type ProcWatcher struct {
	pid   int
	hwm   bool // VmHWM was reset at the start, so it is this run's peak
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	first ProcSample
	last  ProcSample
	peak  int64
	err   error
}

// WatchProc starts sampling pid every interval.
func WatchProc(pid int, interval time.Duration) (*ProcWatcher, error) {
	hwmReset := ResetPeakRSS(pid) == nil
	first, err := ReadProc(pid)
	if err != nil {
		return nil, err
	}
	w := &ProcWatcher{pid: pid, hwm: hwmReset, stop: make(chan struct{}), done: make(chan struct{}), first: first, last: first, peak: first.RSS}
	go w.loop(interval)
	return w, nil
}

func (w *ProcWatcher) loop(interval time.Duration) {
	defer close(w.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			w.sample()
			return
		case <-t.C:
			w.sample()
		}
	}
}

func (w *ProcWatcher) sample() {
	s, err := ReadProc(w.pid)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.err = err
		return
	}
	w.last = s
	w.peak = max(w.peak, s.RSS)
	if w.hwm {
		// VmHWM also catches spikes between two samples.
		w.peak = max(w.peak, s.HWM)
	}
}

// ProcUsage is what a process used during a run.
type ProcUsage struct {
	CPUSeconds float64 `json:"cpuSeconds"`
	// PeakRSSMiB is the largest RSS seen: sampled VmRSS, or VmHWM when the
	// kernel let us reset it at the start of the run.
	PeakRSSMiB float64 `json:"peakRSSMiB"`
	EndRSSMiB  float64 `json:"endRSSMiB"`
	// HWMMiB is VmHWM at the end: the process's lifetime peak unless the
	// reset at the start worked.
	HWMMiB float64 `json:"hwmMiB"`
}

// Stop ends sampling and returns the usage between start and now.
func (w *ProcWatcher) Stop() (ProcUsage, error) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	u := ProcUsage{
		CPUSeconds: (w.last.CPU - w.first.CPU).Seconds(),
		PeakRSSMiB: mib(w.peak),
		EndRSSMiB:  mib(w.last.RSS),
		HWMMiB:     mib(w.last.HWM),
	}
	return u, w.err
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
