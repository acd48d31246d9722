package containerd

import "sync"

// work is one object to look at because an event named it.
type work struct {
	ns    string
	topic string
	// Exactly one of image and containerID is set.
	image       string
	containerID string
}

func (w work) key() string {
	if w.containerID != "" {
		return "c\x00" + w.ns + "\x00" + w.containerID
	}
	return "i\x00" + w.ns + "\x00" + w.image
}

// queue hands events to workers without ever blocking the event stream.
// It coalesces: an object already waiting is not queued twice (a CRI pull
// sends create and update for one name), and an object being worked on is
// queued again only after that work is done, so one object is never worked
// on by two workers at once. Its size is bounded by the number of distinct
// objects, not by the number of events.
type queue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	order      []string
	waiting    map[string]work
	processing map[string]bool
	closed     bool
}

func newQueue() *queue {
	q := &queue{waiting: map[string]work{}, processing: map[string]bool{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

func (q *queue) add(w work) {
	k := w.key()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if _, ok := q.waiting[k]; ok {
		return
	}
	q.waiting[k] = w
	if q.processing[k] {
		return // queued by done
	}
	q.order = append(q.order, k)
	q.cond.Signal()
}

// get blocks until there is work or the queue is closed.
func (q *queue) get() (work, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.order) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return work{}, false
	}
	k := q.order[0]
	q.order[0] = ""
	q.order = q.order[1:]
	w := q.waiting[k]
	delete(q.waiting, k)
	q.processing[k] = true
	return w, true
}

func (q *queue) done(w work) {
	k := w.key()
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, k)
	if _, ok := q.waiting[k]; ok && !q.closed {
		q.order = append(q.order, k)
		q.cond.Signal()
	}
}

// close wakes every worker; work still waiting is dropped (the next
// reconcile covers it).
func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	q.cond.Broadcast()
}

// keyedMutex serializes work on one key (an image's content) while other
// keys proceed.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*refMutex
}

type refMutex struct {
	sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*refMutex{}
	}
	m := k.locks[key]
	if m == nil {
		m = &refMutex{}
		k.locks[key] = m
	}
	m.refs++
	k.mu.Unlock()

	m.Lock()
	return func() {
		m.Unlock()
		k.mu.Lock()
		m.refs--
		if m.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}
