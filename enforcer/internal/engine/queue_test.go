package engine

import (
	"context"
	"testing"
	"time"
)

func TestQueueMergesAndSerializes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	q := NewQueue[string, []string](func(old, new []string) []string { return append(old, new...) })
	q.Add("a", []string{"1"})
	q.Add("a", []string{"2"}) // waiting already: merged
	q.Add("b", []string{"3"})
	k, v, _ := q.Get(ctx)
	if k != "a" || len(v) != 2 {
		t.Fatalf("got %q %q first, want a with both values", k, v)
	}
	q.Add("a", []string{"4"}) // a is being worked on: handed out again only after Done
	k, _, _ = q.Get(ctx)
	if k != "b" {
		t.Fatalf("got %q, want b (a is in progress)", k)
	}
	got := make(chan string, 1)
	go func() { k, _, _ := q.Get(ctx); got <- k }()
	select {
	case k := <-got:
		t.Fatalf("got %q while a is in progress", k)
	case <-time.After(20 * time.Millisecond):
	}
	q.Done("a")
	select {
	case k := <-got:
		if k != "a" {
			t.Fatalf("got %q, want a again", k)
		}
	case <-time.After(time.Second):
		t.Fatal("a not handed out again after Done")
	}
	select {
	case <-q.Idle():
		t.Fatal("idle while work is in progress")
	default:
	}
	q.Done("b")
	q.Done("a")
	select {
	case <-q.Idle():
	case <-time.After(time.Second):
		t.Fatal("not idle once everything is done")
	}
	cancel()
	if _, _, ok := q.Get(ctx); ok {
		t.Fatal("Get after cancel returned work")
	}
}

// A burst of events about one object costs work linear in the burst: the
// queue holds one entry per object however many events name it.
func BenchmarkQueueBurstOneKey(b *testing.B) {
	ctx := context.Background()
	q := NewQueue[string, int](func(old, new int) int { return old + new })
	for b.Loop() {
		for range 200 {
			q.Add("img", 1)
		}
		k, _, _ := q.Get(ctx)
		q.Done(k)
	}
}
