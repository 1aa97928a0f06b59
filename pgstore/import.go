package pgstore

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/txcloud/keys/store"
)

var _ store.Importer = (*Store)(nil)

// Import implements store.Importer in one transaction: COPY the batch into
// a temporary table (emptied at commit), then one INSERT … SELECT that
// skips every record whose digest (or ID) is stored, or comes earlier in
// the batch, and notifies the other instances' filters of each key it
// inserted. COPY is PostgreSQL's fastest way in; the INSERT is what makes
// a second import of the same keys create nothing. It is not bounded by
// the store's statement timeout: a batch of 10000 rows can
// take longer than a lookup should.
func (s *Store) Import(ctx context.Context, recs []*store.Record) (int, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	var inserted [][]byte
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, s.qImportTable); err != nil {
			return err
		}
		cols := strings.Split(recordCols, ", ")
		rows := make([][]any, len(recs))
		for i, r := range recs {
			rows[i] = recordArgs(r)
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"pg_temp", s.importTable}, cols, pgx.CopyFromRows(rows)); err != nil {
			return err
		}
		res, err := tx.Query(ctx, s.qImport, s.channel)
		if err != nil {
			return err
		}
		inserted, err = pgx.CollectRows(res, pgx.RowTo[[]byte])
		return err
	})
	if err != nil {
		return 0, err
	}
	for _, d := range inserted {
		var dg store.Digest
		copy(dg[:], d)
		s.filter.add(&dg)
	}
	return len(inserted), nil
}
