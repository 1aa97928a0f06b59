package portal

import "time"

// SetClock sets the portal's clock, for the session's timeouts.
func (p *Portal) SetClock(now func() time.Time) { p.now = now }
