package engine

import (
	"context"
	"sync"
)

// Queue hands work on runtime objects to workers without ever blocking the
// goroutine that reads the event stream. It merges, with the semantics of
// client-go's workqueue: a key added while it is already waiting is queued
// once (its values merged), and a key being worked on is never handed to a
// second worker; added meanwhile, it is handed out again after Done. Its
// size is bounded by the number of distinct objects, not of events, so a
// burst of events about one image costs one pass over it.
type Queue[K comparable, V any] struct {
	merge func(old, new V) V

	mu         sync.Mutex
	order      []K
	waiting    map[K]V
	processing map[K]bool
	ready      chan struct{} // holds a token while keys may be waiting
	// idle is closed and replaced whenever nothing is waiting or in progress.
	idle chan struct{}
}

// NewQueue returns an empty queue. merge combines the value of a key that
// is added while it waits with the value already waiting; nil keeps the
// first value.
func NewQueue[K comparable, V any](merge func(old, new V) V) *Queue[K, V] {
	if merge == nil {
		merge = func(old, _ V) V { return old }
	}
	return &Queue[K, V]{
		merge: merge, waiting: map[K]V{}, processing: map[K]bool{},
		ready: make(chan struct{}, 1), idle: make(chan struct{}),
	}
}

// Add queues key with v. It never blocks.
func (q *Queue[K, V]) Add(key K, v V) {
	q.mu.Lock()
	if old, ok := q.waiting[key]; ok {
		q.waiting[key] = q.merge(old, v)
		q.mu.Unlock()
		return
	}
	q.waiting[key] = v
	if !q.processing[key] {
		q.order = append(q.order, key)
	}
	q.mu.Unlock()
	q.signal()
}

func (q *Queue[K, V]) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// Get waits for a key that no worker holds; false once ctx is done. The
// caller must call Done(key) when it has finished with it.
func (q *Queue[K, V]) Get(ctx context.Context) (K, V, bool) {
	for {
		q.mu.Lock()
		if len(q.order) > 0 {
			k := q.order[0]
			var zero K
			q.order[0] = zero
			q.order = q.order[1:]
			if len(q.order) == 0 {
				q.order = nil // let the backing array go after a burst
			}
			v := q.waiting[k]
			delete(q.waiting, k)
			q.processing[k] = true
			more := len(q.order) > 0
			q.mu.Unlock()
			if more {
				q.signal() // wake the next worker
			}
			return k, v, true
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			var k K
			var v V
			return k, v, false
		case <-q.ready:
		}
	}
}

// Done releases key; if it was added again meanwhile, it is queued now.
func (q *Queue[K, V]) Done(key K) {
	q.mu.Lock()
	delete(q.processing, key)
	requeued := false
	if _, ok := q.waiting[key]; ok {
		q.order = append(q.order, key)
		requeued = true
	}
	if len(q.waiting) == 0 && len(q.processing) == 0 {
		close(q.idle)
		q.idle = make(chan struct{})
	}
	q.mu.Unlock()
	if requeued {
		q.signal()
	}
}

// Idle returns a channel closed once nothing is waiting or in progress.
func (q *Queue[K, V]) Idle() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.waiting) == 0 && len(q.processing) == 0 {
		c := make(chan struct{})
		close(c)
		return c
	}
	return q.idle
}

// Len is how many keys wait (not counting those being worked on).
func (q *Queue[K, V]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.waiting)
}
