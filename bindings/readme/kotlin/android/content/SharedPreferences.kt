// A stand-in for the part of Android's SharedPreferences the README uses, so
// that its Kotlin compiles and runs on a plain JVM (scripts/check-readme).
package android.content

interface SharedPreferences {
    fun getString(key: String, defValue: String?): String?
    fun edit(): Editor

    interface Editor {
        fun putString(key: String, value: String?): Editor
        fun commit(): Boolean
    }
}
