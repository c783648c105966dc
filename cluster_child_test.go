package ws

import (
	"fmt"
)

// occupancyNodeChild serves a hub on Redis whose occupancy hooks print
// "OCCUPIED <channel>" and "VACATED <channel>", prints "NODE <storage
// node ID>" and "URL <url>", and waits to be killed.
func occupancyNodeChild(opts RedisOptions) error {
	return serveNodeChild(opts, Config{
		OnChannelOccupied: func(ch string) { fmt.Println("OCCUPIED", ch) },
		OnChannelVacated:  func(ch string) { fmt.Println("VACATED", ch) },
	}, nil, func(s *RedisStorage) { fmt.Println("NODE", s.NodeID()) })
}
