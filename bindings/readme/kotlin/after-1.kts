// Runs after the README's first Kotlin block, which checks itself.
println("otp block: ok")
