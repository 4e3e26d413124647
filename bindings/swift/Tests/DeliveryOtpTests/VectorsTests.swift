import DeliveryOtp
import Foundation
import XCTest

/// Every case of every shared vector file, through the Swift bindings.
final class VectorsTests: XCTestCase {
    /// Runs a file's cases; returns how many there are and how many TOTP
    /// times lay past year 9999 (not run here; Rust's tests run them).
    private func runOtpFile(_ file: String) throws -> (Int, Int) {
        var pastDates = 0
        let cases = try Vectors.cases(file)
        for c in cases {
            let ctx = "\(file): \(c.name)"
            let secret = try Secret.fromBytes(bytes: hex(c.str("secret_hex")))
            let alg = algorithm(c.str("algorithm"))
            let code = c.str("code")
            switch c.str("mode") {
            case "hotp":
                let hotp = try Hotp(secret: secret, digits: c.u32("digits"), algorithm: alg)
                // The counter's 64 bits: past Int64.max it is negative.
                let counter = c.bits("counter")
                XCTAssertEqual(hotp.generate(counter: counter), code, ctx)
                XCTAssertEqual(try hotp.verify(code: code, counter: counter), counter, ctx)
                let start = UInt64(bitPattern: counter) >= 3 ? counter &- 3 : 0
                XCTAssertEqual(try hotp.verify(code: code, counter: start, lookAhead: 3), counter, ctx)
            case "totp":
                let totp = try Totp.withPeriod(secret: secret, digits: c.u32("digits"),
                                               period: TimeInterval(c.u64("period")), algorithm: alg, t0: c.time("t0"))
                // Dates past year 9999 are not handed to the library here (Rust's tests run them).
                guard let seconds = UInt64(c.str("time")), seconds <= 253_402_300_799 else {
                    pastDates += 1
                    continue
                }
                let time = Date(timeIntervalSince1970: TimeInterval(seconds))
                XCTAssertEqual(try totp.generate(time: time), code, ctx)
                let match = try totp.verify(code: code, time: time)
                XCTAssertEqual(match?.drift, 0, ctx)
                XCTAssertNil(try totp.verify(code: code, time: time, lastUsedStep: match?.step),
                             "\(ctx): used step accepted again")
            default:
                XCTFail("\(ctx): unknown mode")
            }
        }
        return (cases.count, pastDates)
    }

    func testRfc4226AppendixD() throws {
        let (ran, past) = try runOtpFile("rfc4226-hotp.json")
        XCTAssertEqual([ran, past], [50, 0])
    }

    func testRfc6238AppendixB() throws {
        let (ran, past) = try runOtpFile("rfc6238-totp.json")
        XCTAssertEqual([ran, past], [18, 0])
    }

    func testReferenceImplementations() throws {
        let (ran, past) = try runOtpFile("reference-implementations.json")
        XCTAssertGreaterThan(ran, 200)
        XCTAssertEqual(past, 45)  // unix times 2^63 and 2^64 - 1
    }

    func testRfc4648Base32() throws {
        let file = "rfc4648-base32.json"
        let cases = try Vectors.cases(file)
        XCTAssertEqual(cases.count, 6)
        for c in cases {
            let secret = try Secret.fromBase32(text: c.str("encoded"))
            XCTAssertEqual(secret, try Secret.fromBytes(bytes: hex(c.str("bytes_hex"))), c.name)
            XCTAssertEqual(secret.toBase32(), String(c.str("encoded").prefix { $0 != "=" }), c.name)
        }
        for c in try Vectors.cases(file, "lenient") {
            XCTAssertEqual(try Secret.fromBase32(text: c.str("text")),
                           try Secret.fromBytes(bytes: hex(c.str("bytes_hex"))), c.name)
        }
        let invalid = try Vectors.cases(file, "invalid")
        XCTAssertFalse(invalid.isEmpty)
        for c in invalid {
            let (k, message) = expectOtpError(c.name) { try Secret.fromBase32(text: c.str("text")) }
            XCTAssertEqual(k, c.str("error"), c.name)
            if let position = c.int("position") {
                XCTAssertTrue(message.contains("position \(position)"), "\(c.name): \(message)")
            }
            if let length = c.int("length") {
                XCTAssertTrue(message.contains("\(length) characters"), "\(c.name): \(message)")
            }
        }
    }

    func testOtpauthUris() throws {
        let file = "otpauth-uri.json"
        let valid = try Vectors.cases(file, "valid")
        XCTAssertGreaterThanOrEqual(valid.count, 10)
        for c in valid {
            let key = try KeyUri(parsing: c.str("uri"))
            let expectedKind: OtpKind = c.str("type") == "totp"
                ? .totp(period: TimeInterval(c.u64("period"))) : .hotp(counter: c.bits("counter"))
            XCTAssertEqual(key.kind, expectedKind, c.name)
            XCTAssertEqual(key.secret, try Secret.fromBytes(bytes: hex(c.str("secret_hex"))), c.name)
            XCTAssertEqual(key.issuer, c.optStr("issuer"), c.name)
            XCTAssertEqual(key.account, c.str("account"), c.name)
            XCTAssertEqual(key.algorithm, algorithm(c.str("algorithm")), c.name)
            XCTAssertEqual(key.digits, c.u32("digits"), c.name)
            let formatted = try key.toUri()
            XCTAssertEqual(formatted, c.str("formatted"), c.name)
            XCTAssertEqual(try KeyUri(parsing: formatted), key, "\(c.name): round trip")
            let made = try KeyUri(kind: key.kind, secret: key.secret, account: key.account, issuer: key.issuer,
                                  algorithm: key.algorithm, digits: key.digits)
            XCTAssertEqual(made, key, "\(c.name): made from its fields")
        }
        let invalid = try Vectors.cases(file, "invalid")
        XCTAssertGreaterThanOrEqual(invalid.count, 20)
        for c in invalid {
            let (k, message) = expectOtpError(c.name) { try KeyUri(parsing: c.str("uri")) }
            XCTAssertEqual(k, c.str("error"), "\(c.name): \(message)")
            if let parameter = c.optStr("parameter") {
                XCTAssertTrue(message.contains("'\(parameter)'"), "\(c.name): \(message)")
            }
            XCTAssertFalse(message.contains("MZXW"), "\(c.name): message shows the secret")
        }
    }
}
