// Package consistency decides whether a snapshot of a database is application-consistent,
// from the database's side: a Writer writes numbered keys to Redis one at a time and
// records when each was sent and acknowledged; Check compares the keys found in a server
// started on the snapshot's copy with those records and the freeze window the events
// report. Redis is a minimal RESP client for both, so the module needs no Redis library.
package consistency
