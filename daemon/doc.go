// Package daemon holds the long-running parts of pullguard that are not
// about any one runtime: logging to journald, turning enforcement records
// into journal entries (with flood control), watching and hot-reloading the
// policy, and talking to systemd (sd_notify, watchdog).
//
// Every field pullguard writes is named in fields.go and every kind of entry
// has a fixed MESSAGE_ID in messageids.go, so that SREs can filter the
// journal (journalctl MESSAGE_ID=... PULLGUARD_ACTION=removed) and packagers
// can ship a journald catalog.
package daemon
