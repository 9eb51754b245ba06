-- uses: breakers
-- set_breaker: open (ARGV[3] "1", until closed by hand) or close the declared breaker ARGV[2]
-- (JSON) by hand.
breaker_by_hand(cjson.decode(ARGV[2]), ARGV[3] == '1')
publish()
return 1
