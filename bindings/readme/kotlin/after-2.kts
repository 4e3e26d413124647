// Runs after the README's courier-app block: a wrong code, the right one, and
// a store whose writes fail.
import kotlinx.coroutines.runBlocking
import readme.standins.MemoryPreferences

val readmeKeys = """{"version":1,"current":"k1","keys":[{"id":"k1","secret":"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZA"}]}"""
KeySet.fromJson(readmeKeys).use { keys ->
    Backend(keys).use { backend ->
        val issued = backend.issue("PKG-readme", 0, "courier-1", java.time.Instant.now(), defaultDeliverySettings())
        val json = issued.ticket.toJson()
        val wrong = issued.code.dropLast(1) + if (issued.code.last() == '0') "1" else "0"
        val store = PrefsStore(MemoryPreferences())
        val first = runBlocking { checkCode(json, wrong, store) }
        check(first == "Wrong code, 4 attempts left") { first }
        val second = runBlocking { checkCode(json, issued.code, store) }
        check(second == "Accepted: hand the parcel over") { second }
        val failing = PrefsStore(MemoryPreferences(failWrites = true))
        try {
            runBlocking { checkCode(json, issued.code, failing) }
            error("a write that failed was taken as saved")
        } catch (e: OtpException.StateStorage) {
            check(e.message!!.contains("attempt state not saved")) { e.message!! }
        }
    }
}
println("courier app block: ok")
