module github.com/stepflash/stepflash

go 1.26
