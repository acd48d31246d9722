package docker

import (
	"context"
	"sync"
)

// jobKind is what a queued job does.
type jobKind int

const (
	// jobImageName judges one name an event put on an image.
	jobImageName jobKind = iota
	// jobImageID judges every name of an image.
	jobImageID
	// jobContainer judges a created or started container.
	jobContainer
	// jobContainerGone forgets a destroyed container.
	jobContainerGone
	// jobRepository judges every image of a repository: `docker pull -a`
	// sends one pull event naming the repository alone.
	jobRepository
)

// job is one unit of work for the workers.
type job struct {
	kind  jobKind
	event string // the event's action, for records
	// ref is an image name (jobImageName), an image ID (jobImageID) or a
	// container ID.
	ref string
}

// queue is an unbounded FIFO of jobs. push never blocks, so the goroutine
// reading Docker's event stream never stalls it, whatever the workers do.
type queue struct {
	mu    sync.Mutex
	items []job
	// busy counts jobs queued or being worked on.
	busy int
	// ready holds a token while items may be waiting.
	ready chan struct{}
	// idle is closed and replaced whenever busy drops to zero (tests).
	idle chan struct{}
}

func newQueue() *queue {
	return &queue{ready: make(chan struct{}, 1), idle: make(chan struct{})}
}

func (q *queue) push(j job) {
	q.mu.Lock()
	q.items = append(q.items, j)
	q.busy++
	q.mu.Unlock()
	q.signal()
}

func (q *queue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pop waits for a job; false when ctx is done. The caller calls done when
// it has finished the job.
func (q *queue) pop(ctx context.Context) (job, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			j := q.items[0]
			q.items[0] = job{}
			q.items = q.items[1:]
			if len(q.items) == 0 {
				q.items = nil // let the backing array go after a burst
			}
			more := len(q.items) > 0
			q.mu.Unlock()
			if more {
				q.signal() // wake the next worker
			}
			return j, true
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return job{}, false
		case <-q.ready:
		}
	}
}

func (q *queue) done() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.busy--
	if q.busy == 0 {
		close(q.idle)
		q.idle = make(chan struct{})
	}
}

// idleCh returns a channel closed when no job is queued or in progress.
func (q *queue) idleCh() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.busy == 0 {
		c := make(chan struct{})
		close(c)
		return c
	}
	return q.idle
}

// keyedMutex serializes work per key (an image or container ID) while
// letting different keys proceed in parallel.
type keyedMutex struct {
	mu   sync.Mutex
	keys map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.keys == nil {
		k.keys = map[string]*keyLock{}
	}
	l := k.keys[key]
	if l == nil {
		l = &keyLock{}
		k.keys[key] = l
	}
	l.refs++
	k.mu.Unlock()

	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(k.keys, key)
		}
		k.mu.Unlock()
	}
}
