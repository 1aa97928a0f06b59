package pgstore

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/txcloud/keys/store"
)

var _ store.Marker = (*Store)(nil)

// The mark statements (migration 9). markSQL inserts a mark, or renews
// one that expired by $3, and returns a row only then: of concurrent
// marks of one name, the unique index lets one insert and the others find
// it unexpired.
const (
	markSQL = `INSERT INTO {{schema}}.marks AS m (mark, until) VALUES ($1, $2)
ON CONFLICT (mark) DO UPDATE SET until = EXCLUDED.until WHERE m.until <= $3
RETURNING 1`
	unmarkSQL      = `DELETE FROM {{schema}}.marks WHERE mark = $1`
	markedSQL      = `SELECT EXISTS (SELECT 1 FROM {{schema}}.marks WHERE mark = $1 AND until > $2)`
	expireMarksSQL = `DELETE FROM {{schema}}.marks WHERE mark IN (SELECT mark FROM {{schema}}.marks WHERE until <= $1 LIMIT $2)`
)

// Mark implements store.Marker: one statement, shared by every instance
// on the database. Expired marks are deleted on the last-used flush.
func (s *Store) Mark(ctx context.Context, mark store.Digest, until, now time.Time) (bool, error) {
	if s.closed.Load() {
		return false, ErrClosed
	}
	c, ctx, done, err := s.conn(ctx)
	if err != nil {
		return false, err
	}
	defer done()
	var one int
	switch err := c.QueryRow(ctx, s.qMark, mark[:], until, now).Scan(&one); {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// Unmark implements store.Marker.
func (s *Store) Unmark(ctx context.Context, mark store.Digest) error {
	if s.closed.Load() {
		return ErrClosed
	}
	_, err := s.exec(ctx, s.qUnmark, mark[:])
	return err
}

// Marked implements store.Marker: one indexed read.
func (s *Store) Marked(ctx context.Context, mark store.Digest, now time.Time) (bool, error) {
	if s.closed.Load() {
		return false, ErrClosed
	}
	c, ctx, done, err := s.conn(ctx)
	if err != nil {
		return false, err
	}
	defer done()
	var marked bool
	err = c.QueryRow(ctx, s.qMarked, mark[:], now).Scan(&marked)
	return marked, err
}

// expireMarks deletes marks expired by now, touchChunk per statement, at
// most 10 statements a flush (the rest wait for the next).
func (s *Store) expireMarks(ctx context.Context, now time.Time) error {
	for range 10 {
		tag, err := s.exec(ctx, s.qExpireMarks, now, touchChunk)
		if err != nil || tag.RowsAffected() < touchChunk {
			return err
		}
	}
	return nil
}
