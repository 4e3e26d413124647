// SharedPreferences in memory; with failWrites, commit() reports a failed
// write as a full disk would.
package readme.standins

import android.content.SharedPreferences
import java.util.concurrent.ConcurrentHashMap

class MemoryPreferences(private val failWrites: Boolean = false) : SharedPreferences {
    private val values = ConcurrentHashMap<String, String>()

    override fun getString(key: String, defValue: String?): String? = values[key] ?: defValue

    override fun edit(): SharedPreferences.Editor = object : SharedPreferences.Editor {
        private val pending = HashMap<String, String?>()
        override fun putString(key: String, value: String?): SharedPreferences.Editor = apply { pending[key] = value }
        override fun commit(): Boolean {
            if (failWrites) return false
            for ((k, v) in pending) if (v == null) values.remove(k) else values[k] = v
            return true
        }
    }
}
