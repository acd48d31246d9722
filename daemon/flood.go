package daemon

import (
	"container/list"
	"sync"
	"time"

	"github.com/pullguard/pullguard/enforcer"
)

// floodKey is what makes two records "the same" for flood control. A
// Kubernetes node retrying a denied pull every few seconds produces the
// same key over and over.
type floodKey struct {
	action, runtime, namespace, image, reason string
	// container: a record about a container is never "the same" as one
	// about its image. A pulled disallowed image and the container then
	// made from it are two decisions on two objects, and the container's
	// must not wait a whole window to be logged. (Containers of one image
	// share a key: a crash-looping pod makes a new container each time.)
	container bool
}

func keyOf(rec enforcer.Record) floodKey {
	return floodKey{
		action:    string(rec.Action),
		runtime:   rec.Runtime,
		namespace: rec.Namespace,
		image:     imageOf(rec),
		reason:    rec.Decision.Reason,
		container: rec.ContainerID != "",
	}
}

// floodState is one key's window: when its last entry was written and
// what was suppressed since.
type floodState struct {
	key        floodKey
	start      time.Time
	suppressed int
	last       enforcer.Record // the latest suppressed record
}

// floodSummary is a suppressed record that is now due: it is written as
// itself, with repeats earlier identical records folded into it.
type floodSummary struct {
	rec     enforcer.Record
	repeats int
}

// floodGate lets each key through at most once per window. It counts what
// it holds back, so that every entry written stands for itself plus
// PULLGUARD_REPEATS identical ones suppressed before it. Memory is bounded
// by maxKeys; keys idle for a whole window are forgotten.
type floodGate struct {
	window  time.Duration
	maxKeys int

	mu    sync.Mutex
	keys  map[floodKey]*list.Element // of *floodState
	order *list.List                 // oldest window start first
}

func newFloodGate(window time.Duration, maxKeys int) *floodGate {
	return &floodGate{window: window, maxKeys: maxKeys, keys: map[floodKey]*list.Element{}, order: list.New()}
}

// admit decides about rec seen at now. It returns whether rec is to be
// written and, if so, how many identical records were suppressed before
// it. evicted, when set, is a key pushed out to make room whose suppressed
// records must be written now or never.
func (g *floodGate) admit(rec enforcer.Record, now time.Time) (ok bool, repeats int, evicted *floodSummary) {
	if g.window <= 0 {
		return true, 0, nil
	}
	k := keyOf(rec)
	g.mu.Lock()
	defer g.mu.Unlock()
	if el, found := g.keys[k]; found {
		st := el.Value.(*floodState)
		if now.Sub(st.start) < g.window {
			st.suppressed++
			st.last = rec
			return false, 0, nil
		}
		repeats = st.suppressed
		st.start, st.suppressed, st.last = now, 0, enforcer.Record{}
		g.order.MoveToBack(el)
		return true, repeats, nil
	}
	if len(g.keys) >= g.maxKeys {
		evicted = g.evictOldest()
	}
	g.keys[k] = g.order.PushBack(&floodState{key: k, start: now})
	return true, 0, evicted
}

func (g *floodGate) evictOldest() *floodSummary {
	el := g.order.Front()
	if el == nil {
		return nil
	}
	st := g.order.Remove(el).(*floodState)
	delete(g.keys, st.key)
	if st.suppressed == 0 {
		return nil
	}
	return &floodSummary{rec: st.last, repeats: st.suppressed - 1}
}

// expire handles every key whose window has passed: one that suppressed
// records is due an entry (returned) and starts a new window, so that the
// count is not lost when the retries stop; an idle one is forgotten.
func (g *floodGate) expire(now time.Time) []floodSummary {
	g.mu.Lock()
	defer g.mu.Unlock()
	var due []floodSummary
	var renewed []*list.Element
	for el := g.order.Front(); el != nil; {
		st := el.Value.(*floodState)
		if now.Sub(st.start) < g.window {
			break // the list is in window-start order
		}
		next := el.Next()
		if st.suppressed == 0 {
			g.order.Remove(el)
			delete(g.keys, st.key)
		} else {
			due = append(due, floodSummary{rec: st.last, repeats: st.suppressed - 1})
			st.start, st.suppressed, st.last = now, 0, enforcer.Record{}
			renewed = append(renewed, el)
		}
		el = next
	}
	for _, el := range renewed {
		g.order.MoveToBack(el)
	}
	return due
}

// drain returns every pending summary and forgets all keys: at shutdown,
// so that counts are written rather than lost.
func (g *floodGate) drain() []floodSummary {
	g.mu.Lock()
	defer g.mu.Unlock()
	var due []floodSummary
	for el := g.order.Front(); el != nil; el = el.Next() {
		if st := el.Value.(*floodState); st.suppressed > 0 {
			due = append(due, floodSummary{rec: st.last, repeats: st.suppressed - 1})
		}
	}
	g.keys = map[floodKey]*list.Element{}
	g.order.Init()
	return due
}

// size is the number of keys held (tests).
func (g *floodGate) size() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.keys)
}
