package dev.deliveryotp

import javax.crypto.Mac
import javax.crypto.spec.SecretKeySpec

/**
 * What a call through the Kotlin bindings costs, per exported entry point,
 * next to its do-nothing twin in [FfiBaseline] (same argument and return
 * types), next to the trivial uniffi call, and next to HOTP in plain JVM code.
 *
 * Run by scripts/bench-kotlin against a library built with the `ffi-bench`
 * feature. Each figure is the median of [ROUNDS] rounds; the real call and
 * its twin alternate round by round (and which goes first), so a slower
 * stretch of the machine falls on both.
 */

const val ROUNDS = 41
const val ROUND_NANOS = 25_000_000L

/** Calls [body] in a loop for about ROUND_NANOS and returns ns per call. */
fun round(calls: Int, body: () -> Unit): Double {
    val start = System.nanoTime()
    for (i in 0 until calls) body()
    return (System.nanoTime() - start).toDouble() / calls
}

/** How many calls fill a round, from a short trial that also warms the JIT. */
fun callsPerRound(body: () -> Unit): Int {
    var calls = 200
    while (true) {
        val start = System.nanoTime()
        for (i in 0 until calls) body()
        val took = System.nanoTime() - start
        if (took > ROUND_NANOS / 4) return maxOf(1, (calls.toLong() * ROUND_NANOS / took).toInt())
        calls *= 2
    }
}

fun median(values: List<Double>): Double = values.sorted()[values.size / 2]

/** Median ns per call of [ours] and [twin], measured in alternating rounds. */
fun pair(ours: () -> Unit, twin: () -> Unit): Pair<Double, Double> {
    val n1 = callsPerRound(ours)
    val n2 = callsPerRound(twin)
    val a = ArrayList<Double>()
    val b = ArrayList<Double>()
    System.gc()
    repeat(ROUNDS) { i ->
        // Alternate which goes first, so neither always follows the other.
        if (i % 2 == 0) {
            a.add(round(n1, ours))
            b.add(round(n2, twin))
        } else {
            b.add(round(n2, twin))
            a.add(round(n1, ours))
        }
    }
    return median(a) to median(b)
}

/** A store that keeps nothing, so every verify takes the full path of a first attempt. */
class ForgetfulStore : DeviceStateStore {
    override fun load(key: String): String? = null
    override fun compareAndSet(key: String, expected: String?, value: String): Boolean = true
}

/** A store in memory, as the app's would be. */
class KeepingStore : DeviceStateStore {
    private val values = java.util.concurrent.ConcurrentHashMap<String, String>()
    override fun load(key: String): String? = values[key]
    override fun compareAndSet(key: String, expected: String?, value: String): Boolean =
        if (expected == null) values.putIfAbsent(key, value) == null else values.replace(key, expected, value)
}

/** HOTP (RFC 4226) with javax.crypto, key set up per call, as an app without this library would. */
fun jvmHotp(secret: ByteArray, counter: Long): String {
    val mac = Mac.getInstance("HmacSHA1")
    mac.init(SecretKeySpec(secret, "HmacSHA1"))
    val msg = ByteArray(8) { i -> (counter ushr (56 - 8 * i)).toByte() }
    val h = mac.doFinal(msg)
    val o = h[h.size - 1].toInt() and 0x0f
    val v = ((h[o].toInt() and 0x7f) shl 24) or ((h[o + 1].toInt() and 0xff) shl 16) or
        ((h[o + 2].toInt() and 0xff) shl 8) or (h[o + 3].toInt() and 0xff)
    return (v % 1_000_000).toString().padStart(6, '0')
}

fun main(args: Array<String>) {
    val rfcSecret = "12345678901234567890".toByteArray()
    val secret = Secret.fromBytes(rfcSecret)
    val hotp = Hotp(secret)
    val totp = Totp(secret)
    val keys = KeySet.generate("bench")
    val backend = Backend(keys)
    val settings = defaultDeliverySettings()
    val issued = backend.issue("PKG-2026-000123", 0, "courier-17", java.time.Instant.ofEpochSecond(1_764_000_000), settings)
    val ticketJson = issued.ticket().toJson()
    val verifier = OfflineVerifier(issued.ticket(), ForgetfulStore())
    val deviceKey = backend.provisionDevice("courier-17", "pixel-8-0042")
    val receiptVerifier = OfflineVerifier(issued.ticket(), KeepingStore())
    receiptVerifier.verify(issued.code(), java.time.Instant.ofEpochSecond(1_764_000_010))
    val receipt = receiptVerifier.receipt(
        deviceKey, Handover.DeliveredOffline(issued.code()), java.time.Instant.ofEpochSecond(1_764_000_011),
        ReceiptDetails(appVersion = "android/3.4.1", location = null, photoSha256 = null),
    )
    val receiptJson = receipt.toJson()
    val order = Order(valueMinor = 14_999, currency = "GBP", method = DeliveryMethod.HAND_TO_CUSTOMER)
    val policy = RiskPolicy.defaults()
    val templates = MessageTemplates.defaults()
    val values = MessageValues(
        sender = "Acme", deliveryId = "PKG-2026-000123", code = issued.code(),
        expiresAt = java.time.Instant.ofEpochSecond(1_764_000_900), utcOffsetMinutes = 60,
    )
    val uri = "otpauth://totp/ACME%20Co:john.doe@email.com?secret=JBSWY3DPEHPK3PXP&issuer=ACME%20Co&algorithm=SHA256&digits=8&period=60"
    val twin = FfiBaseline(backend, receiptJson, order, values)
    val forgetful = ForgetfulStore()
    var seq = 1L
    var sink = 0L

    data class Row(val name: String, val ours: Double, val twin: Double, val twinName: String)
    val rows = ArrayList<Row>()
    fun measure(name: String, twinName: String, ours: () -> Unit, base: () -> Unit) {
        val (a, b) = pair(ours, base)
        rows.add(Row(name, a, b, twinName))
        System.err.println("measured $name")
    }

    measure("ffiBaselineI32 (trivial call)", "itself", { sink += ffiBaselineI32(7).toLong() }, { sink += ffiBaselineI32(7).toLong() })
    measure("Hotp.generate", "(i64) -> String", { sink += hotp.generate(5L).length }, { sink += twin.codeForCounter(5L).length })
    measure("Hotp.verify (look-ahead 1)", "(String, i64, i32) -> i64?", { sink += (hotp.verify("254676", 5L, 1) ?: 0L) }, { sink += (twin.hotpVerify("254676", 5L, 1) ?: 0L) })
    measure("Totp.generate", "(Instant) -> String, throws", { sink += totp.generate(java.time.Instant.ofEpochSecond(59)).length }, { sink += twin.codeForTimeResult(java.time.Instant.ofEpochSecond(59)).length })
    measure("Totp.verify (±1, wrong code)", "(String, Instant, i32, i32, i64?) -> TotpMatch?", { sink += if (totp.verify("000000", java.time.Instant.ofEpochSecond(59), 1, 1, null) == null) 1 else 0 }, { sink += if (twin.totpVerify("000000", java.time.Instant.ofEpochSecond(59), 1, 1, null) == null) 1 else 0 })
    measure("Backend.issue", "(String, i64, String, Instant, DeliverySettings) -> IssuedCode", { sink += backend.issue("PKG-2026-000123", seq++, "courier-17", java.time.Instant.ofEpochSecond(1_764_000_000), settings).use { it.code().length } }, { sink += twin.issue("PKG-2026-000123", seq, "courier-17", java.time.Instant.ofEpochSecond(1_764_000_000), settings).use { it.code().length } })
    measure("Ticket.fromJson", "(String) -> Ticket", { Ticket.fromJson(ticketJson).destroy() }, { twin.ticketFromJson(ticketJson).destroy() })
    // The same wrong code again from the same device: the stored answer, counted once.
    measure("Backend.verifyOnline (a repeated wrong code)", "(Ticket, String, String, String, Instant) -> OnlineOutcome", { sink += backend.verifyOnline(issued.ticket(), "000000", "courier-17", "pixel-8-0042", java.time.Instant.ofEpochSecond(1_764_000_010)).hashCode() }, { sink += twin.verifyOnline(issued.ticket(), "000000", "courier-17", "pixel-8-0042", java.time.Instant.ofEpochSecond(1_764_000_010)).hashCode() })
    measure("OfflineVerifier.verify (right code)", "(String, Instant) -> OfflineOutcome", { sink += verifier.verify(issued.code(), java.time.Instant.ofEpochSecond(1_764_000_010)).hashCode() }, { sink += twin.offlineVerify(issued.code(), java.time.Instant.ofEpochSecond(1_764_000_010)).hashCode() })
    measure("OfflineVerifier.verify (right code)", "the same, + store load and save", { sink += verifier.verify(issued.code(), java.time.Instant.ofEpochSecond(1_764_000_010)).hashCode() }, { sink += twin.offlineVerifyWithStore(forgetful, issued.code(), java.time.Instant.ofEpochSecond(1_764_000_010)).hashCode() })
    measure("Backend.reconcile (repeated)", "(String, Ticket, Instant) -> Reconciliation", { sink += backend.reconcile(receiptJson, issued.ticket(), java.time.Instant.ofEpochSecond(1_764_000_100)).explanation.length }, { sink += twin.reconcile(receiptJson, issued.ticket(), java.time.Instant.ofEpochSecond(1_764_000_100)).explanation.length })
    measure("RiskPolicy.decide", "(Order) -> PolicyDecision", { sink += policy.decide(order).reasons.size }, { sink += twin.decide(order).reasons.size })
    measure("MessageTemplates.renderSms", "(String, MessageValues) -> Sms", { sink += templates.renderSms("en", values).text.length }, { sink += twin.renderSms("en", values).text.length })
    measure("normalizeCode", "(String, CodeFormat) -> String", { sink += normalizeCode("482 913", CodeFormat.Numeric(6)).length }, { sink += ffiBaselineNormalizeCode("482 913", CodeFormat.Numeric(6)).length })
    measure("maskPhone", "(String) -> String", { sink += maskPhone("+44 7700 900123").length }, { sink += ffiBaselineMask("+44 7700 900123").length })
    measure("KeyUri.parse", "(String) -> KeyUri", { KeyUri.parse(uri).use { it.secret().destroy() } }, { ffiBaselineParseKeyUri(uri).use { it.secret().destroy() } })
    // Timed as a pair with itself, like the first row: javax.crypto needs
    // the longer warm-up of two interleaved runs (timed alone, its figure
    // moved between 22 and 63 µs on this machine).
    val (jvm, _) = pair({ sink += jvmHotp(rfcSecret, 5L).length }, { sink += jvmHotp(rfcSecret, 5L).length })

    val trivial = rows[0].ours
    println("| entry point (Kotlin, JNA) | µs per call | do-nothing twin | twin µs | ratio to twin | ratio to trivial call |")
    println("|---|---:|---|---:|---:|---:|")
    for (r in rows) {
        println("| ${r.name} | ${"%.2f".format(r.ours / 1000)} | ${r.twinName} | ${"%.2f".format(r.twin / 1000)} | ${"%.2f".format(r.ours / r.twin)} | ${"%.1f".format(r.ours / trivial)} |")
    }
    println("| plain JVM HOTP (javax.crypto, key per call) | ${"%.2f".format(jvm / 1000)} | | | | ${"%.2f".format(jvm / trivial)} |")
    System.err.println("(sink $sink)")
}
