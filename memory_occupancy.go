package ws

import "context"

// OccupyChannels counts one more hub with subscribers of each channel and
// returns the channels that had none. A MemoryStorage normally serves one
// hub, so each channel counts 0 or 1; hubs of one process that share a
// MemoryStorage count once each, as the nodes of a cluster do. It fails
// only when ctx is done, before changing anything, so a retried call
// never counts twice.
func (s *MemoryStorage) OccupyChannels(ctx context.Context, channels []string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.occupied == nil {
		s.occupied = make(map[string]int)
	}
	var occupied []string
	for _, ch := range channels {
		s.occupied[ch]++
		if s.occupied[ch] == 1 {
			occupied = append(occupied, ch)
		}
	}
	return occupied, nil
}

// VacateChannels counts one hub fewer with subscribers of each channel and
// returns the channels that have none left. Vacating a channel that no
// hub occupies does nothing.
func (s *MemoryStorage) VacateChannels(ctx context.Context, channels []string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var vacated []string
	for _, ch := range channels {
		if s.occupied[ch] == 0 {
			continue
		}
		s.occupied[ch]--
		if s.occupied[ch] == 0 {
			delete(s.occupied, ch)
			vacated = append(vacated, ch)
		}
	}
	return vacated, nil
}
