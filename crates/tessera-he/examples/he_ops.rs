//! Times each BFV operation the serpens2 protocol performs on one ciphertext (N slots).

use std::time::Instant;

use tessera_field::{seed::os_rng, zt};
use tessera_he::{Ciphertext, Form, HeParams, Plaintext, SecretKey};

fn time<T>(what: &str, reps: u32, mut f: impl FnMut() -> T) -> T {
    let mut out = f();
    let start = Instant::now();
    for _ in 0..reps {
        out = f();
    }
    println!("{what:<40} {:>8.3} ms", start.elapsed().as_secs_f64() * 1e3 / reps as f64);
    out
}

fn main() {
    let params = HeParams::standard().unwrap();
    println!("{params:?}");
    let mut rng = os_rng();
    let n = params.degree();
    let values: Vec<u64> = (0..n).map(|_| zt::random(&mut rng)).collect();
    let sk = time("secret key", 5, || SecretKey::generate(&params, &mut os_rng()).unwrap());
    let pk = time("public key", 5, || sk.public_key(&mut os_rng()).unwrap());
    let pt0 = time("encode level 0", 20, || Plaintext::encode(&params, &values, 0).unwrap());
    let pt1 = time("encode level 1", 20, || Plaintext::encode(&params, &values, 1).unwrap());
    let ct = time("encrypt (seeded)", 20, || sk.encrypt(&pt0, &mut os_rng()).unwrap());
    let mut wire = Vec::new();
    time("write seeded", 20, || {
        wire.clear();
        ct.write(&params, Form::Seeded, &mut wire).unwrap()
    });
    let ct = time("read seeded", 20, || Ciphertext::read(&params, Form::Seeded, &wire).unwrap());
    let mut c = ct.clone();
    time("add plain level 0", 20, || c.add_plain(&pt0).unwrap());
    time("mul plain level 0", 20, || c.mul_plain(&pt0).unwrap());
    let switched = time("switch to level 1", 20, || {
        let mut d = c.clone();
        d.switch_to(1).unwrap();
        d
    });
    let mut d = switched.clone();
    time("sub plain level 1", 20, || d.sub_plain(&pt1).unwrap());
    time("write returned (no sealing)", 20, || {
        wire.clear();
        d.write(&params, Form::Returned, &mut wire).unwrap()
    });
    time("seal (switch, re-randomize, write)", 20, || {
        wire.clear();
        pk.seal(&c, &mut os_rng(), &mut wire).unwrap()
    });
    let back = time("read returned", 20, || Ciphertext::read(&params, Form::Returned, &wire).unwrap());
    time("decrypt level 1", 20, || sk.decrypt(&back).unwrap());
    time("decrypt level 0", 20, || sk.decrypt(&ct).unwrap());
    time("clone ct", 20, || ct.clone());
}
