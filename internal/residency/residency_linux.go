package residency

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

func devNumber(major, minor uint32) uint64 { return unix.Mkdev(major, minor) }

// ReleaseExecutable drops the process's mappings of its executable's
// clean pages (code and read-only data); they are mapped again, from the
// page cache or the file, when next used. A mapping holding a written
// page (a debugger's or a uprobe's breakpoint) is left alone; one written
// in the microseconds between reading smaps and the madvise would be lost.
func ReleaseExecutable() (Released, error) {
	start := time.Now()
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		return Released{}, err
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return Released{}, err
	}
	ms, err := releasable(f, st.Dev, st.Ino)
	f.Close()
	if err != nil {
		return Released{}, fmt.Errorf("reading /proc/self/smaps: %w", err)
	}
	var r Released
	for _, m := range ms {
		// By address: these pages are not Go memory, so no slice is made
		// of them.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(m.start), uintptr(m.end-m.start), unix.MADV_DONTNEED); errno != 0 {
			return r, fmt.Errorf("madvise %x-%x: %w", m.start, m.end, errno)
		}
		r.Mappings++
		r.Bytes += m.rss
	}
	r.Took = time.Since(start)
	return r, nil
}
