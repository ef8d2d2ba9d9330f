module github.com/freezeframe/freezeframe/services/snapshotter

go 1.26.0
