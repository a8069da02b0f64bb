package sqlite

import (
	"fmt"
	"os"
	"syscall"
)

// lockFile takes an exclusive lock on path, failing at once if another
// process holds it. The kernel releases it when the process dies, even by
// SIGKILL.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open sqlite lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s is in use by another switchback server: a SQLite store serves one node (use PostgreSQL for several)", path[:len(path)-len(".lock")])
	}
	return f, nil
}

func unlock(f *os.File) {
	if f != nil {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}
}
