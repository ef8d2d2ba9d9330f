module github.com/freezeframe/freezeframe/cmd/freezeframe

go 1.26.0
